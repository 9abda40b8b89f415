"""Command lines of ``report.py``, ``report_figure3.py`` and ``report_asymptotic_variance.py``.

The scripts are thin: each calls one ``*_main`` here. Parsers follow ``ovis.cli`` (every default in
``--help``, dashed aliases of underscored options, comma lists by ``comma_list``). Exit codes
(``ovis.exit_codes``): 0 success, 2 bad arguments or input (message on stderr, nothing written).
"""
import shlex
import sys
from typing import Optional, Sequence

from ovis import exit_codes, records
from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list
from ovis.reporting.aggregate import ReportError
from ovis.reporting.report import DEFAULT_METRICS, DEFAULT_PIVOT_METRICS, ReportOptions

REPORT_EXAMPLE = """example:
    python report.py --exp sigmoid-belief-network --include iwbound \\
        --keys dataset,estimator,iw --metrics train:loss/L_k,train:grads/snr \\
        --pivot_metrics max:test:loss/L_k,last:train:loss/kl_q_p,mean:train:grads/snr \\
        --ylims train:loss/L_k:-94:-88 --downsample 50

writes reports/<exp>[-inc=...][-exc=...][-ema...][-<id of the other options>]/index.md; a report
replaces only the files it wrote before (listed in report.json) and deletes nothing else."""


def _parser(prog: str, description: str, epilog: str = "") -> ArgumentParser:
    return ArgumentParser(prog=prog, description=description, epilog=epilog or None,
                          formatter_class=ExamplesHelpFormatter)


def report_parser() -> ArgumentParser:
    parser = _parser("report.py", "Figures, pivot tables and an index page for an experiment's runs.",
                     REPORT_EXAMPLE)
    parser.add_argument("--exp", default="mini-vae", help="experiment name (folder under --root)")
    parser.add_argument("--root", default="runs/", help="folder holding the experiments")
    parser.add_argument("--output", default="reports/", help="folder receiving the report folder")
    parser.add_argument("--keys", default="dataset,estimator,iw",
                        help="1-4 run options: [category,] hue[, x axis/line style[, style]]")
    parser.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help="<split>:<key> curves, one figure each")
    parser.add_argument("--detailed_metrics", default=",".join(DEFAULT_METRICS),
                        help="metrics of the detailed grid (rows) against the x key (columns); '' to skip")
    parser.add_argument("--pivot_metrics", default=",".join(DEFAULT_PIVOT_METRICS),
                        help="[<agg>:]<split>:<key>, agg in min, max, mean (avg), last; without agg the metric's "
                             "default: max for loss/L_k and loss/elbo, min for loss/kl*, loss/nll and gmm/*, "
                             "mean for grads/* and snr/*, else last")
    parser.add_argument("--ylims", default="", help="<split>:<key>:<min>:<max>,...")
    parser.add_argument("--include", default="", help="keep runs whose id contains one of these substrings")
    parser.add_argument("--exclude", default="", help="drop runs whose id contains one of these substrings")
    parser.add_argument("--where", default="",
                        help="option=value,...: keep runs with these options (config.json's names and values, e.g. "
                             "depth=1,id=E2,id=E4: an option given twice accepts either value)")
    parser.add_argument("--downsample", type=int, default=0, help="at most this many points per curve (0: all)")
    parser.add_argument("--ema", type=float, default=0.0, help="exponential smoothing factor of the curves, [0, 1)")
    parser.add_argument("--parse_estimator_args", action="store_true",
                        help="split estimator ids into family and parameters (ovis-gamma1 -> ovis-gamma, gamma=1)")
    parser.add_argument("--merge_args", default="", help="a,b: add the option a-b holding '<a>-<b>'")
    parser.add_argument("--float_format", default="auto", help="number format of the tables, e.g. .2f")
    parser.add_argument("--non_completed", action="store_true", help="also read running, failed and aborted runs")
    parser.add_argument("--max_records", type=int, default=-1, help="read at most this many runs (-1: all)")
    parser.add_argument("--log_steps", action="store_true", help="log scale for the training step axis")
    parser.add_argument("--latex", action="store_true", help="also print the LaTeX pivot table")
    return parser


def report_options(argv: Optional[Sequence[str]] = None) -> ReportOptions:
    args = report_parser().parse_args(argv)
    lists = {name: comma_list(getattr(args, name)) for name in
             ("keys", "metrics", "detailed_metrics", "pivot_metrics", "ylims", "include", "exclude", "where",
              "merge_args")}
    for name in ("metrics", "detailed_metrics", "pivot_metrics"):  # old metric names read as the current ones
        lists[name] = [records.current_metric_name(metric) for metric in lists[name]]
    plain = {name: value for name, value in vars(args).items() if name not in lists}
    command = "python report.py " + " ".join(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    return ReportOptions(**plain, **lists, command=command)


def report_main(argv: Optional[Sequence[str]] = None) -> int:
    from ovis.reporting.report import build_report

    options = report_options(argv)
    try:
        build_report(options)
    except (ReportError, FileNotFoundError) as error:
        print(f"report.py: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    return exit_codes.SUCCESS


def figure3_options(argv: Optional[Sequence[str]] = None):
    from ovis.reporting.figure3 import DEFAULT_REPORTS, Figure3Options

    parser = _parser("report_figure3.py", "Figure 3 of the paper (SBN training curves) from a report's curves.csv.",
                     "example:\n    python report.py --exp sigmoid-belief-network --include iwbound\n"
                     "    python report_figure3.py --figure left")
    parser.add_argument("--figure", choices=("left", "right"), default="left",
                        help="left: IW bound runs; right: Renyi warm-up runs")
    # named as report.py names them: --output holds the reports, --report is one of them
    parser.add_argument("--output", default="reports/", help="folder holding the reports")
    parser.add_argument("--report", default="", help=f"report folder name ('': {DEFAULT_REPORTS['left']} for left, "
                                                  f"{DEFAULT_REPORTS['right']} for right, or the one report of "
                                                  f"that name followed by the id of its options)")
    parser.add_argument("--dataset", default="binmnist", help="data set of the curves")
    parser.add_argument("--style_key", default="iw", help="attribute drawn as line style and marker")
    parser.add_argument("--metric", default="train:loss/L_k", help="<split>:<key> drawn")
    parser.add_argument("--window", type=int, default=15, help="Hann smoothing window (evaluation points)")
    for name, default, meaning in (("desaturate", 0.9, "saturation factor of the colours"),
                                   ("lighten", 1.0, "lightness factor of the colours"),
                                   ("opacity", 0.9, "opacity of the lines"), ("linewidth", 1.2, "width of the lines")):
        parser.add_argument(f"--{name}", type=float, default=default, help=meaning)
    parser.add_argument("--ylim", default="-92.5,-86.2", help="min,max of the y axis ('' for automatic)")
    args = parser.parse_args(argv)
    try:
        ylim = tuple(comma_list(args.ylim, float)) or None
    except ValueError:
        ylim = ()
    if ylim is not None and (len(ylim) != 2 or not ylim[0] < ylim[1]):
        parser.error(f"--ylim {args.ylim!r}: expected min,max with min < max, or '' for automatic")
    return Figure3Options(**{**vars(args), "ylim": ylim})


def figure3_main(argv: Optional[Sequence[str]] = None) -> int:
    from ovis.reporting.figure3 import draw_figure3

    options = figure3_options(argv)
    try:
        paths, table = draw_figure3(options)
    except (FileNotFoundError, ValueError) as error:
        print(f"report_figure3.py: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\n".join(paths))
    return exit_codes.SUCCESS


def asymptotic_main(argv: Optional[Sequence[str]] = None) -> int:
    from ovis.reporting.asymptotic import build_asymptotic_report

    parser = _parser("report_asymptotic_variance.py",
                     "Figure 1 of the paper from every run of an asymptotic-variance experiment: concatenates the "
                     "runs' data.csv (averaging runs that measured the same estimator and K), prints the log-log "
                     "slopes of SNR, variance and magnitude against K and draws the figures.",
                     "example:\n    python report_asymptotic_variance.py --exp asymptotic-variance"
                     "   # -> reports/asymptotic-variance/")
    parser.add_argument("--root", default="runs/", help="folder holding the experiments")
    parser.add_argument("--output", default="reports/", help="folder receiving the report folder")
    parser.add_argument("--exp", default="asymptotic-variance", help="experiment name")
    parser.add_argument("--filter", default="", help="skip runs whose folder name contains this")
    parser.add_argument("--float_format", default="+.3f", help="format of the slopes")
    parser.add_argument("--draw_individual", action="store_true", help="also draw every coordinate")
    args = parser.parse_args(argv)
    try:
        directory = build_asymptotic_report(args.root, args.output, args.exp, args.filter, args.draw_individual,
                                            args.float_format)
    except (FileNotFoundError, ValueError) as error:
        print(f"report_asymptotic_variance.py: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    print(f"report written to {directory}/index.md")
    return exit_codes.SUCCESS
