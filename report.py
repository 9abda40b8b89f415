"""Figures, pivot tables and an index page for an experiment's runs.

    python report.py --exp sigmoid-belief-network --include iwbound \\
        --keys dataset,estimator,iw --metrics train:loss/L_k,train:grads/snr \\
        --pivot_metrics max:test:loss/L_k,last:train:loss/kl_q_p,mean:train:grads/snr \\
        --ylims train:loss/L_k:-94:-88 --downsample 50

writes ``reports/<exp>[-inc=...][-exc=...]/index.md`` and the files it shows
(see ``ovis/reporting/report.py``).
"""
import argparse
import shlex
import sys

from ovis.reporting.aggregate import ReportError
from ovis.reporting.report import DEFAULT_METRICS, DEFAULT_PIVOT_METRICS, ReportOptions, build_report, comma_list


def parse_args(argv=None) -> ReportOptions:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exp", default="mini-vae", help="experiment name (folder under --root)")
    parser.add_argument("--root", default="runs/", help="folder holding the experiments")
    parser.add_argument("--output", default="reports/", help="folder receiving the report folder")
    parser.add_argument("--keys", default="dataset,estimator,iw",
                        help="1-4 run options: [category,] hue[, x axis/line style[, style]]")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="<split>:<key> curves, one figure each")
    parser.add_argument("--detailed_metrics", default=",".join(DEFAULT_METRICS),
                        help="metrics of the detailed grid (rows) against the x key (columns); '' to skip")
    parser.add_argument("--pivot_metrics", default=",".join(DEFAULT_PIVOT_METRICS),
                        help="<agg>:<split>:<key>, agg in min, max, mean (avg), last")
    parser.add_argument("--ylims", default="", help="<split>:<key>:<min>:<max>,...")
    parser.add_argument("--include", default="", help="keep runs whose id contains one of these substrings")
    parser.add_argument("--exclude", default="", help="drop runs whose id contains one of these substrings")
    parser.add_argument("--downsample", type=int, default=0, help="at most this many points per curve (0: all)")
    parser.add_argument("--ema", type=float, default=0.0, help="exponential smoothing factor of the curves, [0, 1)")
    parser.add_argument("--parse_estimator_args", action="store_true",
                        help="split estimator ids into family and parameters (ovis-gamma1 -> ovis, gamma=1)")
    parser.add_argument("--merge_args", default="", help="a,b: add the option a-b holding '<a>-<b>'")
    parser.add_argument("--float_format", default="auto", help="number format of the tables, e.g. .2f")
    parser.add_argument("--non_completed", action="store_true", help="also read running, failed and aborted runs")
    parser.add_argument("--max_records", type=int, default=-1, help="read at most this many runs (-1: all)")
    parser.add_argument("--log_steps", action="store_true", help="log scale for the training step axis")
    parser.add_argument("--latex", action="store_true", help="also print the LaTeX pivot table")
    args = parser.parse_args(argv)
    return ReportOptions(
        exp=args.exp, root=args.root, output=args.output, keys=comma_list(args.keys),
        metrics=comma_list(args.metrics), detailed_metrics=comma_list(args.detailed_metrics),
        pivot_metrics=comma_list(args.pivot_metrics), ylims=comma_list(args.ylims),
        include=comma_list(args.include), exclude=comma_list(args.exclude), downsample=args.downsample,
        ema=args.ema, parse_estimator_args=args.parse_estimator_args, merge_args=comma_list(args.merge_args),
        float_format=args.float_format, non_completed=args.non_completed, max_records=args.max_records,
        log_steps=args.log_steps, latex=args.latex,
        command="python report.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    try:
        build_report(parse_args())
    except (ReportError, FileNotFoundError) as error:
        sys.exit(f"report.py: {error}")
