"""Test facilities shipped with ovis (like ``torch.testing``), used by the test suite and by
``python -m ovis.apps.check``: small models with exact answers (``ovis.testing.models``) and the
bias and variance tables of every registered estimator against them (``ovis.testing.check``).
Layering: above the estimators (nothing in the library below the command lines imports it)."""
from ovis.testing.models import EnumerableModel, LinearGaussianModel, enumerate_estimator, per_datum_gradients

__all__ = ["EnumerableModel", "LinearGaussianModel", "enumerate_estimator", "per_datum_gradients"]
