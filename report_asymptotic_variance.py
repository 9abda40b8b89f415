"""Figure 1 of the paper from every run of an asymptotic-variance experiment.

    python report_asymptotic_variance.py --exp asymptotic-variance   # -> reports/asymptotic-variance/

Concatenates the runs' ``data.csv`` (averaging runs that measured the same estimator and K),
prints the log-log slopes of SNR, variance and magnitude against K and draws the figures.
"""
import argparse
import sys

from ovis.reporting.asymptotic import build_asymptotic_report


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
        sys.exit(f"report_asymptotic_variance.py: {error}")
    print(f"report written to {directory}/index.md")


if __name__ == "__main__":
    main()
