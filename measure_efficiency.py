"""Time per training step of run.py, its hardware floor and peak memory per estimator and K, on
the paper's SBN (3 x 200, linear) and Gaussian VAE (see ``ovis/training/efficiency.py``). Runs
on CPU and CUDA.

    python measure_efficiency.py --models sbm,gaussian-vae --iw 5,10,50 \\
        --estimators reinforce,vimco-arithmetic,ovis-gamma1,ovis-S10-exclusive,tvo-part2-config1,pathwise-iwae

writes ``reports/efficiency/efficiency.csv``, ``efficiency.md`` and ``efficiency.png|pdf``;
``--load reports/efficiency/efficiency.csv`` only redraws them.
"""
import os
import sys

import pandas as pd

from ovis.reporting.efficiency import markdown_summary, plot_efficiency
from ovis.reporting.style import apply_style
from ovis.training.efficiency import build_parser, efficiency_table, with_clock, workloads_of


def main(argv=None) -> None:
    args = build_parser(__doc__).parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    if args.load:
        table = pd.read_csv(args.load)
    else:
        table = efficiency_table(workloads_of(args))
        if table.empty:
            sys.exit("measure_efficiency.py: no estimator could train the given models")
        table.to_csv(os.path.join(args.output, "efficiency.csv"), index=False)
    table = with_clock(table, args.clock)
    summary = markdown_summary(table)
    with open(os.path.join(args.output, "efficiency.md"), "w") as f:
        f.write(summary)
    apply_style()
    paths = plot_efficiency(table, os.path.join(args.output, "efficiency"))
    if "threads_used" in table:
        print(f"{args.clock} time; torch threads {', '.join(map(str, sorted(table['threads_used'].unique())))}; "
              f"load average {table['load'].min():.1f}-{table['load'].max():.1f}; step / floor "
              f"{table['cpu_vs_floor' if args.clock == 'cpu' else 'time_vs_floor'].min():.2f}-"
              f"{table['cpu_vs_floor' if args.clock == 'cpu' else 'time_vs_floor'].max():.2f}\n")
    print(summary)
    print("\n".join(paths))


if __name__ == "__main__":
    main()
