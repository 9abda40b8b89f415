"""Reports and the paper's figures from run records.

* ``report.build_report(ReportOptions(exp=...))``: figures, pivot tables, ``index.md`` and its
  self-contained ``index.html`` (``html``) of an experiment (``report.py``).
* ``figure3.draw_figure3``: Figure 3 from a report's ``curves.csv`` (``report_figure3.py``).
* ``asymptotic.build_asymptotic_report``: Figure 1 from ``asymptotic_variance.py`` runs
  (``report_asymptotic_variance.py``); ``asymptotic.draw_figures``: a run's figures.
* ``efficiency.plot_efficiency``: the figure of ``measure_efficiency.py``.
* ``cli``: the parsers and entry points of the three report scripts.
* ``panels.estimator_grid``: the log-log panels against K of Figure 1 and the efficiency figure.
* ``style``: paper display names and the fixed colour of every estimator (from
  ``ovis.estimators.config.describe_estimator_id``).
"""
