"""Gradient estimators of importance weighted variational bounds.

    from ovis.estimators.config import parse_estimator_id
    Estimator, config = parse_estimator_id("ovis-gamma1")
    estimator = Estimator(mc=1, iw=16, **config)
    loss, diagnostics, output = estimator(model, x, backward=False, alpha=0.0, beta=1.0)
    loss.mean().backward()

``loss [bs]`` is a per-data-point surrogate whose gradient estimates that of ``-L``; a training
step may call ``estimator(model, x, backward=True)`` instead (the estimator's backward pass, which
also trains parameters with an objective of their own: ``GradientEstimator.backward``);
``diagnostics`` maps ``group/key`` to per-data-point values (``loss/L_k``, ``loss/ess``, ...).
``ovis.estimators.pyro`` (the optional Pyro adapter) is imported on first use, never by the core.
``python -m ovis.apps.check`` prints each estimator's bias and variance on a model small
enough to enumerate. Every id belongs to a family of ``ovis.estimators.registry``;
``register_estimator(EstimatorFamily(...))`` (also ``ovis.register_estimator``) adds your own.
"""
from .base import GradientEstimator
from .particles import Particles, RuntimeOptions, iw_bound
from .config import EstimatorId, describe_estimator_id, parse_estimator_id
from .evaluation import BoundEvaluator
from .ovis import OvisAsymptotic, OvisMonteCarlo
from .pathwise import DReG, Pathwise, PathwiseIWAE, PathwiseVAE, StickingTheLanding
from .score_function import Reinforce, ReinforceBaseline, ScoreFunctionEstimator
from .tvo import ThermodynamicVariationalObjective
from .vimco import VIMCO
from .registry import EstimatorFamily, Style, register_estimator, registered_families
from .wake_sleep import WakeSleep, WakeWake


def __getattr__(name):
    if name in ("VALID_FORMS", "EXAMPLE_IDS"):  # read from the registry when accessed (plugins included)
        from . import config
        return getattr(config, name)
    if name == "pyro":  # optional extra: imported on first use only
        import importlib
        return importlib.import_module(f"{__name__}.pyro")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["parse_estimator_id", "describe_estimator_id", "EstimatorId", "VALID_FORMS", "EXAMPLE_IDS",
           "EstimatorFamily", "Style", "register_estimator", "registered_families",
           "GradientEstimator", "Particles", "RuntimeOptions", "iw_bound", "BoundEvaluator", "Pathwise", "PathwiseVAE", "PathwiseIWAE",
           "StickingTheLanding", "DReG", "ScoreFunctionEstimator", "Reinforce", "ReinforceBaseline", "VIMCO",
           "OvisAsymptotic", "OvisMonteCarlo", "ThermodynamicVariationalObjective", "WakeWake", "WakeSleep"]

