"""``measure_efficiency.py``'s command line: one ``Workload`` per model x estimator x K
(``ovis.training.efficiency``), measured in the run folder's life cycle (``ovis.run_folder``):
``--output`` holds ``config.json``, ``run.log``, the outcome marker, ``efficiency.csv``,
``efficiency.md`` and the figure. A new measurement replaces the previous one there (the folder
is not emptied: it may hold other files); ``--load`` only redraws from a table.

Exit codes (``ovis.exit_codes``): 0 success, 1 failed (no estimator could train the models, a
bad workload option), 2 bad arguments, 130 aborted.
"""
import argparse
import os
from typing import List, Optional, Sequence

import pandas as pd

from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list, integer_option
from ovis.files import atomic_write
from ovis.reporting.efficiency import markdown_summary, plot_efficiency
from ovis.reporting.style import apply_style
from ovis.run_folder import StopRequests, run_script, run_work
from ovis.training.efficiency import KINDS, Workload, default_estimators, efficiency_table, with_clock

SCRIPT = "measure_efficiency.py"


def build_parser(description: str = "") -> argparse.ArgumentParser:
    """The options of ``measure_efficiency.py`` (one ``Workload`` per model x estimator x K)."""
    parser = ArgumentParser(description=description, formatter_class=ExamplesHelpFormatter)
    parser.add_argument("--models", type=comma_list, default="sbm,gaussian-vae", help="comma-separated model names")
    parser.add_argument("--estimators", type=comma_list, default=default_estimators(),
                        help="comma-separated estimator ids")
    parser.add_argument("--iw", type=lambda text: comma_list(text, integer_option), default="5,10,50",
                        help="comma-separated K values")
    parser.add_argument("--bs", type=integer_option, default=24, help="batch size")
    parser.add_argument("--mc", type=integer_option, default=1, help="outer Monte-Carlo samples M")
    parser.add_argument("--kind", choices=KINDS, default="train", help="train: run.py's training step; "
                        "evaluate: the plain bound")
    parser.add_argument("--chunk_size", type=integer_option, default=None,
                        help="rows per forward pass of --kind evaluate (default: run.py's)")
    parser.add_argument("--untimed_steps", type=integer_option, default=3, help="untimed steps first")
    parser.add_argument("--steps", type=integer_option, default=20, help="timed steps (the median is reported)")
    parser.add_argument("--dataset", default="binmnist")
    parser.add_argument("--data_root", default=None, help="data directory (default: $OVIS_DATA, then ./data)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--threads", type=integer_option, default=0,
                        help="run.py's --threads (0: run.py's choice, one thread for small steps on a CPU)")
    parser.add_argument("--compile", action="store_true", help="run.py's --compile (torch.compile of the step)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu",
                        help="time of the table and figure: process CPU time (on a CPU with one thread the "
                             "wall-clock time of an idle machine, without the waits of a loaded one) or wall-clock "
                             "time (use it on a GPU); the CSV has both")
    parser.add_argument("--output", default="reports/efficiency", help="folder of the table and figure")
    parser.add_argument("--load", default="", help="redraw from this efficiency.csv instead of measuring")
    return parser


def workloads_of(args: argparse.Namespace) -> List[Workload]:
    """The workloads of ``measure_efficiency.py``'s options."""
    return [Workload(model=model, estimator=estimator, iw=k, batch_size=args.bs, mc=args.mc, kind=args.kind,
                     dataset=args.dataset, data_root=args.data_root, device=args.device,
                     untimed_steps=args.untimed_steps, steps=args.steps, threads=args.threads,
                     chunk_size=args.chunk_size, compile=args.compile)
            for model in args.models for estimator in args.estimators for k in args.iw]


def write_summary(table: pd.DataFrame, args: argparse.Namespace) -> None:
    """``efficiency.md`` and the figure in ``--output``; the summary on the terminal."""
    table = with_clock(table, args.clock)
    summary = markdown_summary(table)
    atomic_write(os.path.join(args.output, "efficiency.md"), summary)
    apply_style()
    paths = plot_efficiency(table, os.path.join(args.output, "efficiency"))
    if "threads_used" in table:
        ratio = table["cpu_vs_floor" if args.clock == "cpu" else "time_vs_floor"]
        print(f"{args.clock} time; torch threads {', '.join(map(str, sorted(table['threads_used'].unique())))}; "
              f"load average {table['load'].min():.1f}-{table['load'].max():.1f}; step / floor "
              f"{ratio.min():.2f}-{ratio.max():.2f}\n")
    print(summary)
    print("\n".join(paths))


def main(argv: Optional[Sequence[str]] = None, description: str = "") -> int:
    """Measure (or, with ``--load``, redraw); returns the exit code."""
    args = build_parser(description).parse_args(argv)
    if args.load:
        os.makedirs(args.output, exist_ok=True)
        write_summary(pd.read_csv(args.load), args)
        return 0

    def measure(workloads: List[Workload], resume: bool, logger) -> int:
        def work():
            table = efficiency_table(workloads, log=logger.info)
            if table.empty:
                raise RuntimeError("no estimator could train the given models")
            table.to_csv(os.path.join(args.output, "efficiency.csv"), index=False)
            write_summary(table, args)
        return run_work(args.output, work, logger, StopRequests(logger, at_once=True))

    return run_script(SCRIPT, args, args.output, lambda folder: "", lambda: workloads_of(args), measure,
                      clear=False)
