"""The command-line programs, above the library (``tests/test_layering.py``): each parses its
options and runs the library's functions in the run folder's life cycle (``ovis.run_folder``).
The scripts at the repository root call them.

* ``train``: ``run.py``.
* ``asymptotic``: ``asymptotic_variance.py``.
* ``efficiency``: ``measure_efficiency.py``.
* ``check``: ``python -m ovis.apps.check``, every estimator's bias and variance against exact gradients.
"""
