"""Figure 3 of the paper (SBN training curves) from a report's ``curves.csv``: ``--help`` lists the options.

    python report.py --exp sigmoid-belief-network --include iwbound --keys dataset,estimator,iw
    python report_figure3.py --figure left     # -> reports/sigmoid-belief-network-inc=iwbound/figure3_left.png
"""
import sys

from ovis.reporting.cli import figure3_main

if __name__ == "__main__":
    sys.exit(figure3_main())
