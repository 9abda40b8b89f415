"""Analyses run during training and by the experiment scripts.

* ``gradients.gradient_statistics``: variance, SNR and DSNR of a gradient estimator.
* ``active_units.active_units``: number of active latent units (Burda et al., 2016).
"""
from ovis.analysis.active_units import ActiveUnits, active_units
from ovis.analysis.gradients import GradientStatistics, gradient_statistics, select_parameters

__all__ = ["ActiveUnits", "active_units", "GradientStatistics", "gradient_statistics", "select_parameters"]
