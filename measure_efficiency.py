"""Time per training step and peak memory per estimator and K, on the paper's SBN (3 x 200,
linear) and Gaussian VAE (see ``ovis/analysis/efficiency.py``). Runs on CPU and CUDA.

    python measure_efficiency.py --models sbm,gaussian-vae --iw 5,10,50 \\
        --estimators reinforce,vimco-arithmetic,ovis-gamma1,ovis-S10-exclusive,tvo-part2-config1,pathwise-iwae

writes ``reports/efficiency/efficiency.csv``, ``efficiency.md`` and ``efficiency.png|pdf``;
``--load reports/efficiency/efficiency.csv`` only redraws them.
"""
import argparse
import os
import sys

import pandas as pd

from ovis.analysis.efficiency import KINDS, Workload, efficiency_table
from ovis.reporting.efficiency import markdown_summary, plot_efficiency
from ovis.reporting.style import apply_style

# issue 10: the REBAR family, antithetic, relaxed and baseline estimators (the SBN only; the
# Gaussian VAE is skipped for those that need Bernoulli latents)
REBAR_FAMILY = ("nvil,reinforce-loo,muprop,simple-muprop,rebar,dynamic-rebar,relax,arm,disarm,disarm-iw,"
                "gumbel-softmax,straight-through")
DEFAULT_ESTIMATORS = ("reinforce,vimco-arithmetic,ovis-gamma1,ovis-gamma0,ovis-S10-exclusive,tvo-part2-config1,"
                      "pathwise-iwae," + REBAR_FAMILY)


def _list(text: str, kind=str) -> list:
    try:
        return [kind(float(v)) if kind is int else kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list, got {text!r}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default="sbm,gaussian-vae", help="comma-separated model names")
    parser.add_argument("--estimators", default=DEFAULT_ESTIMATORS, help="comma-separated estimator ids")
    parser.add_argument("--iw", type=lambda t: _list(t, int), default=[5, 10, 50], help="comma-separated K values")
    parser.add_argument("--bs", type=int, default=24, help="batch size")
    parser.add_argument("--mc", type=int, default=1)
    parser.add_argument("--kind", choices=KINDS, default="train", help="train: training step; evaluate: plain bound")
    parser.add_argument("--chunk_size", type=int, default=None, help="rows per forward pass of --kind evaluate")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (the median is reported)")
    parser.add_argument("--dataset", default="binmnist")
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--output", default="reports/efficiency", help="folder of the table and figure")
    parser.add_argument("--load", default="", help="redraw from this efficiency.csv instead of measuring")
    args = parser.parse_args(argv)

    os.makedirs(args.output, exist_ok=True)
    if args.load:
        table = pd.read_csv(args.load)
    else:
        workloads = [Workload(model=model, estimator=estimator, iw=k, batch_size=args.bs, mc=args.mc, kind=args.kind,
                              dataset=args.dataset, data_root=args.data_root, device=args.device, warmup=args.warmup,
                              steps=args.steps, threads=args.threads, chunk_size=args.chunk_size)
                     for model in _list(args.models) for estimator in _list(args.estimators) for k in args.iw]
        table = efficiency_table(workloads)
        if table.empty:
            sys.exit("measure_efficiency.py: no estimator could train the given models")
        table.to_csv(os.path.join(args.output, "efficiency.csv"), index=False)
    summary = markdown_summary(table)
    with open(os.path.join(args.output, "efficiency.md"), "w") as f:
        f.write(summary)
    apply_style()
    paths = plot_efficiency(table, os.path.join(args.output, "efficiency"))
    print(summary)
    print("\n".join(paths))


if __name__ == "__main__":
    main()
