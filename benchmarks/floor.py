"""Training step time against its hardware floor (``ovis.analysis.floor``), per estimator and K.

    OVIS_DATA=../shared/data python benchmarks/floor.py [--threads 1] [--steps 30] [--device cpu]

For each configuration, in one fresh process with run.py's set-up and threads
(``ovis.training.efficiency``), every timed training step is followed by one timing of the
step's bare matrix products (forward and weight gradients; input gradients where the latents
carry gradients; the first inference layer once per data point). Prints the medians and

* ``step / floor``: step time over floor time, from the process CPU time of each (on a CPU:
  on an idle machine, a one-thread call's CPU time is its wall-clock time; on a loaded one
  it leaves out the waits for a core) and from wall-clock time (``wall``);
* ``vs reference``: an estimator's ``step / floor`` over that of the reference estimator of
  its model (``reinforce`` for the SBN, ``pathwise-iwae`` for the Gaussian VAE) at the same
  K: a ratio of two same-process ratios, so that load changes between processes cancel;

as a markdown table, with the thread count and the load average of the machine.
"""
import os
import sys
from typing import Dict, List, Sequence

import pandas as pd

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list  # noqa: E402
from ovis.training.efficiency import Workload, efficiency_table  # noqa: E402

SCORE_FUNCTION = ("reinforce", "vimco-arithmetic", "vimco-geometric", "ovis-gamma1", "ovis-gamma0",
                  "ovis-S1-exclusive", "tvo-part2-config1", "wake-wake")
PATHWISE = ("pathwise-iwae", "dreg")
# model -> (reference estimator, estimators)
SUITES: Dict[str, tuple] = {"sbm": ("reinforce", SCORE_FUNCTION), "gaussian-vae": ("pathwise-iwae", PATHWISE)}
FLOOR_DESCRIPTION = {
    "sbm": "forward + weight gradients of the 6 linear maps; 784x200 on bs rows, the rest on bs*K rows",
    "gaussian-vae": "forward + weight + input gradients (latents carry gradients); encoder (784-200-200-400) "
                    "on bs rows, no input gradient into x; decoder (200-200-200-784) on bs*K rows",
}


def ratio_table(models: Sequence[str], iws: Sequence[int], args, estimators: Dict[str, Sequence[str]] = None,
                log=print) -> pd.DataFrame:
    """Measure every (model, estimator, K) and add ``vs_reference``."""
    workloads = [Workload(model=model, estimator=estimator, iw=k, batch_size=args.bs, data_root=args.data_root,
                          device=args.device, threads=args.threads, untimed_steps=args.untimed_steps,
                          steps=args.steps)
                 for model in models for k in iws for estimator in (estimators or {}).get(model, SUITES[model][1])]
    table = efficiency_table(workloads, log=log)
    column = "cpu_vs_floor" if args.device == "cpu" else "time_vs_floor"
    table["step_vs_floor"] = table[column]
    reference = {(row.model, row.iw): row.step_vs_floor for row in table.itertuples()
                 if row.estimator == SUITES[row.model][0]}
    table["vs_reference"] = [row.step_vs_floor / reference.get((row.model, row.iw), float("nan"))
                             for row in table.itertuples()]
    return table


def markdown(table: pd.DataFrame) -> str:
    """One markdown table per model: estimator x K with step time, floor and the ratios."""
    lines: List[str] = []
    for model, group in table.groupby("model", sort=False):
        reference = SUITES[model][0]
        lines += [f"**{model}** (batch {group['batch_size'].iloc[0]}, {group['device_used'].iloc[0]}, "
                  f"{group['threads_used'].iloc[0]} thread(s), load {group['load'].min():.1f}-{group['load'].max():.1f}; "
                  f"floor: {FLOOR_DESCRIPTION.get(model, '')})", "",
                  f"| estimator | K | step CPU ms | floor CPU ms | step / floor | wall step / floor | vs {reference} |",
                  "|---|---|---|---|---|---|---|"]
        for row in group.itertuples():
            lines.append(f"| {row.estimator} | {row.iw} | {row.cpu_ms:.2f} | {row.floor_cpu_ms:.2f} | "
                         f"{row.step_vs_floor:.2f} | {row.time_vs_floor:.2f} | {row.vs_reference:.2f} |")
        lines.append("")
    return "\n".join(lines)


def add_options(parser: ArgumentParser) -> ArgumentParser:
    parser.add_argument("--device", default="cpu", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=1, help="run.py's --threads (0: run.py's choice)")
    parser.add_argument("--bs", type=int, default=24, help="batch size")
    parser.add_argument("--data_root", default=None, help="data directory (default: $OVIS_DATA, then ./data)")
    parser.add_argument("--untimed_steps", type=int, default=5, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=30, help="timed steps (medians are reported)")
    return parser


def main() -> None:
    parser = add_options(ArgumentParser(description=__doc__, formatter_class=ExamplesHelpFormatter))
    parser.add_argument("--models", type=comma_list, default="sbm,gaussian-vae", help="comma-separated models")
    parser.add_argument("--iw", type=lambda text: comma_list(text, int), default="5,50", help="comma-separated K")
    parser.add_argument("--csv", default="", help="also write the table to this CSV file")
    args = parser.parse_args()
    table = ratio_table(args.models, args.iw, args)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print()
    print(markdown(table))


if __name__ == "__main__":
    main()
