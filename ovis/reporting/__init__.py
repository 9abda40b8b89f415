"""Reports and the paper's figures from run records.

* ``report.build_report(ReportOptions(exp=...))``: figures, pivot tables and ``index.md`` of an
  experiment (``report.py``).
* ``figure3.draw_figure3``: Figure 3 from a report's ``curves.csv`` (``report_figure3.py``).
* ``asymptotic.build_asymptotic_report``: Figure 1 from ``asymptotic_variance.py`` runs
  (``report_asymptotic_variance.py``).
* ``efficiency.plot_efficiency``: the figure of ``measure_efficiency.py``.
* ``style``: paper display names and the fixed colour of every estimator.
"""
