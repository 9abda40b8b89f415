"""Test facilities shipped with ovis (like ``torch.testing``): small models with exact answers
for checking gradient estimators (``ovis.testing.models``), used by the test suite and by
``python -m ovis.estimators.check``. Layering: imports ``ovis.models`` only."""
from ovis.testing.models import EnumerableModel, LinearGaussianModel, enumerate_estimator, per_datum_gradients

__all__ = ["EnumerableModel", "LinearGaussianModel", "enumerate_estimator", "per_datum_gradients"]
