"""Figures, pivot tables and an index page for an experiment's runs: ``python report.py --help``.

    python report.py --exp sigmoid-belief-network --include iwbound --keys dataset,estimator,iw

writes ``reports/<report id>/index.md`` (see ``ovis/reporting/report.py``; options in
``ovis/reporting/cli.py``).
"""
import sys

from ovis.reporting.cli import report_main

if __name__ == "__main__":
    sys.exit(report_main())
