"""Time and peak memory of the paper's test evaluation, L_5000 on the 10,000 test points of
binarized MNIST (``--iw_test 5000``), per chunk size (rows per forward pass), SBN 3 x 200.

    OVIS_DATA=../shared/data python benchmarks/evaluation.py [--threads 2] [--points 20] [--chunks 512,4096,32768]

Each chunk size is measured in a fresh process through run.py's set-up and its evaluation
threads (``ovis.training.components.evaluation_threads``: ``--threads``, else one per core): one
batch of ``--test_bs`` points timed ``--batches`` times. The time for 10,000 points is
extrapolated linearly from the measured points (the evaluation is a loop over batches and
chunks of equal work); the process CPU time (all threads) per point is printed too, for loaded
machines, where wall-clock times of several threads suffer most. The floor is the evaluation's
bare forward matrix products (``ovis.analysis.floor.evaluation_floor_of``: the first inference
layer once per data point and chunk, the other layers once per particle), timed after every
measured batch with the same threads; ``step / floor``: the ratio of the medians, of wall-clock and of process CPU time (on a loaded
machine the CPU time leaves out the waits for a core). The memory is the growth of the peak resident set (CUDA: the peak
allocation) during the evaluation, which does not depend on the number of points.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list  # noqa: E402
from ovis.training.evaluation import DEFAULT_THREADS, measured_chunk_rows, torch_threads  # noqa: E402
from ovis.training.efficiency import Workload, efficiency_table  # noqa: E402

TEST_POINTS = 10000
MEMORY_BUDGET_MIB = 2048


def chosen_chunk_rows(args) -> int:
    """run.py's choice (``ovis.training.evaluation.measured_chunk_rows``) for the model and
    evaluation, measured on a blank image (run.py measures on a test point)."""
    from ovis.models import get_model
    from ovis.training.efficiency import MODEL_PRESETS
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    model = get_model(args.model, (1, 28, 28), **MODEL_PRESETS.get(args.model, {})).to(device).eval()
    with torch_threads(args.threads or DEFAULT_THREADS):
        rows, throughput = measured_chunk_rows(model, torch.zeros(1, 1, 28, 28, device=device), args.test_bs * args.iw)
    print("evaluation chunks, rows per second: " + ", ".join(f"{r}: {v:.3g}" for r, v in throughput.items())
          + f"; chosen: {rows} rows (the smallest within 10% of the fastest that fits a quarter of the free memory)")
    return rows


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=ExamplesHelpFormatter)
    parser.add_argument("--model", default="sbm")
    parser.add_argument("--iw", type=int, default=5000, help="particles K")
    parser.add_argument("--chunks", type=lambda text: [int(c) if c != "auto" else c for c in comma_list(text)],
                        default="auto,512,4096,32768",
                        help="rows (data points x particles) per forward pass; auto: chosen from this machine's "
                             "measured throughput and memory, as run.py chooses them "
                             "(ovis.training.evaluation.measured_chunk_rows)")
    parser.add_argument("--test_bs", type=int, default=10, help="data points per evaluation batch")
    parser.add_argument("--batches", type=int, default=2, help="timed batches per chunk size")
    parser.add_argument("--threads", type=int, default=0, help="run.py's --threads (0: one per core)")
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--compile", action="store_true",
                        help="as run.py --compile: each chunk's forward pass compiled (ovis.training.compilation)")
    parser.add_argument("--data_root", default=None, help="data directory (default: $OVIS_DATA, then ./data)")
    args = parser.parse_args()
    auto = chosen_chunk_rows(args) if "auto" in args.chunks else None
    args.chunks = [auto if chunk == "auto" else chunk for chunk in args.chunks]
    workloads = [Workload(model=args.model, estimator="-", kind="evaluate", iw=args.iw, batch_size=args.test_bs,
                          chunk_size=chunk, device=args.device, threads=args.threads, untimed_steps=int(args.compile),
                          compile=args.compile,
                          steps=args.batches, data_root=args.data_root) for chunk in args.chunks]
    table = efficiency_table(workloads)
    print(f"\nL_{args.iw} of {TEST_POINTS} test points, {args.model}, {table['device_used'].iloc[0]}, "
          f"{table['threads_used'].iloc[0]} thread(s), load {table['load'].min():.1f}-{table['load'].max():.1f}; "
          f"measured on {args.batches} x {args.test_bs} points, time extrapolated linearly\n")
    print("| rows per chunk | s per point | min for 10,000 points | CPU s per point (all threads) | "
          f"floor CPU s per point | step / floor (wall) | step / floor (CPU) | memory of the evaluation (MiB) | fits {MEMORY_BUDGET_MIB} MiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in table.itertuples():
        per_point = row.time_ms / 1e3 / args.test_bs
        print(f"| {row.chunk_size}{' (auto)' if row.chunk_size == auto else ''} | {per_point:.3f} | {per_point * TEST_POINTS / 60:.1f} | "
              f"{row.cpu_ms / 1e3 / args.test_bs:.3f} | {row.floor_cpu_ms / 1e3 / args.test_bs:.3f} | "
              f"{row.time_vs_floor:.2f} | {row.cpu_vs_floor:.2f} | {row.step_memory_mib:.0f} | "
              f"{'yes' if row.step_memory_mib < MEMORY_BUDGET_MIB else 'no'} |")


if __name__ == "__main__":
    main()
