"""Time and peak memory of the paper's test evaluation, L_5000 on the 10,000 test points of
binarized MNIST (``--iw_test 5000``), per chunk size (rows per forward pass), SBN 3 x 200.

    OVIS_DATA=../shared/data python benchmarks/evaluation.py [--threads 2] [--points 20] [--chunks 512,4096,32768]

Each chunk size is measured in a fresh process through run.py's set-up and its evaluation
threads (``ovis.training.main.evaluation_threads``: ``--threads``, else one per core): one
batch of ``--test_bs`` points timed ``--batches`` times. The time for 10,000 points is
extrapolated linearly from the measured points (the evaluation is a loop over batches and
chunks of equal work); the process CPU time (all threads) per point is printed too, for loaded
machines, where wall-clock times of several threads suffer most; the memory is the growth of the peak resident set (CUDA: the peak
allocation) during the evaluation, which does not depend on the number of points.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list  # noqa: E402
from ovis.training.efficiency import Workload, efficiency_table  # noqa: E402

TEST_POINTS = 10000
MEMORY_BUDGET_MIB = 2048


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=ExamplesHelpFormatter)
    parser.add_argument("--model", default="sbm")
    parser.add_argument("--iw", type=int, default=5000, help="particles K")
    parser.add_argument("--chunks", type=lambda text: comma_list(text, int), default="512,4096,32768",
                        help="rows (data points x particles) per forward pass")
    parser.add_argument("--test_bs", type=int, default=10, help="data points per evaluation batch")
    parser.add_argument("--batches", type=int, default=2, help="timed batches per chunk size")
    parser.add_argument("--threads", type=int, default=0, help="run.py's --threads (0: one per core)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--data_root", default=None, help="data directory (default: $OVIS_DATA, then ./data)")
    args = parser.parse_args()
    workloads = [Workload(model=args.model, estimator="-", kind="evaluate", iw=args.iw, batch_size=args.test_bs,
                          chunk_size=chunk, device=args.device, threads=args.threads, untimed_steps=0,
                          steps=args.batches, data_root=args.data_root) for chunk in args.chunks]
    table = efficiency_table(workloads)
    print(f"\nL_{args.iw} of {TEST_POINTS} test points, {args.model}, {table['device_used'].iloc[0]}, "
          f"{table['threads_used'].iloc[0]} thread(s), load {table['load'].min():.1f}-{table['load'].max():.1f}; "
          f"measured on {args.batches} x {args.test_bs} points, time extrapolated linearly\n")
    print("| rows per chunk | s per point | min for 10,000 points | CPU s per point (all threads) | "
          f"memory of the evaluation (MiB) | fits {MEMORY_BUDGET_MIB} MiB |")
    print("|---|---|---|---|---|---|")
    for row in table.itertuples():
        per_point = row.time_ms / 1e3 / args.test_bs
        print(f"| {row.chunk_size} | {per_point:.3f} | {per_point * TEST_POINTS / 60:.1f} | "
              f"{row.cpu_ms / 1e3 / args.test_bs:.3f} | {row.step_memory_mib:.0f} | "
              f"{'yes' if row.step_memory_mib < MEMORY_BUDGET_MIB else 'no'} |")


if __name__ == "__main__":
    main()
