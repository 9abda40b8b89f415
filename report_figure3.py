"""Figure 3 of the paper (SBN training curves) from a report's ``curves.csv``.

    python report.py --exp sigmoid-belief-network --include iwbound --keys dataset,estimator,iw
    python report_figure3.py --figure left     # -> reports/sigmoid-belief-network-inc=iwbound/figure3_left.png
"""
import argparse
import sys

from ovis.reporting.figure3 import Figure3Options, draw_figure3


def parse_args(argv=None) -> Figure3Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--figure", choices=("left", "right"), default="left",
                        help="left: IW bound runs; right: Renyi warm-up runs")
    parser.add_argument("--root", default="reports/", help="folder holding the reports")
    parser.add_argument("--exp", default="", help="report folder name (default: sigmoid-belief-network-inc=iwbound "
                                                  "for left, ...-inc=iwrbound for right)")
    parser.add_argument("--dataset", default="binmnist")
    parser.add_argument("--style_key", default="iw", help="attribute drawn as line style and marker")
    parser.add_argument("--metric", default="train:loss/L_k")
    parser.add_argument("--window", type=int, default=15, help="Hann smoothing window (evaluation points)")
    parser.add_argument("--desaturate", type=float, default=0.9)
    parser.add_argument("--lighten", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=0.9)
    parser.add_argument("--linewidth", type=float, default=1.2)
    parser.add_argument("--ylim", default="-92.5,-86.2", help="min,max of the y axis ('' for automatic)")
    args = parser.parse_args(argv)
    ylim = tuple(float(v) for v in args.ylim.split(",")) if args.ylim else None
    if ylim is not None and (len(ylim) != 2 or not ylim[0] < ylim[1]):
        parser.error(f"--ylim {args.ylim!r}: expected min,max with min < max")
    return Figure3Options(figure=args.figure, root=args.root, exp=args.exp, dataset=args.dataset,
                          style_key=args.style_key, metric=args.metric, window=args.window,
                          desaturate=args.desaturate, lighten=args.lighten, alpha=args.alpha,
                          linewidth=args.linewidth, ylim=ylim)


if __name__ == "__main__":
    options = parse_args()
    try:
        paths, table = draw_figure3(options)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f"report_figure3.py: {error}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print("\n".join(paths))
