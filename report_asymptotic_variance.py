"""Figure 1 of the paper from every run of an asymptotic-variance experiment: ``--help`` lists the options.

    python report_asymptotic_variance.py --exp asymptotic-variance   # -> reports/asymptotic-variance/
"""
import sys

from ovis.reporting.cli import asymptotic_main

if __name__ == "__main__":
    sys.exit(asymptotic_main())
