"""Estimator identifiers: ``parse_estimator_id("ovis-gamma1") -> (OvisAsymptotic, {"gamma": 1.0, ...})``.

The class is then built with ``Estimator(mc=..., iw=..., **config)``. The ids are those of the
registered estimator families (``ovis.estimators.registry``; ``valid_forms()`` lists their
grammar, ``example_ids()`` one id of every form). ``VALID_FORMS`` and ``EXAMPLE_IDS`` read the
registry when accessed, so plugins registered later are included.

``reproduce_original=True`` (ovis's one compatibility switch; also for the relaxed latents of
``ovis.models``) reproduces the original code at HEAD (d119252) where it differs: every
``ovis-S`` number is a fraction of iw (``ovis-S50`` = 50 iw auxiliary particles), unknown
tokens in a TVO id are ignored (the original ``tvo-S5-beta3`` is a 2-partition TVO), and
OVIS~ does not divide its log Z_[-k] correction by 1 - alpha.

``describe_estimator_id(id) -> EstimatorId`` gives what the same parse found, for reports:
the family, the parameters as typed values (``ovis-S2`` has ``S=2`` auxiliary particles,
``ovis-S2.0`` has ``S_per_K=2.0``, i.e. 2K), a display label and ``key``, the canonical id that
groups runs (``Pathwise`` and ``pathwise``, ``ovis-gamma1`` and ``ovis-gamma1.0`` share one).
"""
from typing import Dict, Tuple, Type

from .base import GradientEstimator
from .registry import EstimatorId, example_ids, lookup, valid_forms

def __getattr__(name):
    if name == "VALID_FORMS":
        return valid_forms()
    if name == "EXAMPLE_IDS":
        return example_ids()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def parse_estimator_id(estimator_id: str, reproduce_original: bool = False) -> Tuple[Type[GradientEstimator], Dict]:
    """Map an estimator identifier to ``(EstimatorClass, config)``; build the estimator with
    ``EstimatorClass(mc=..., iw=..., **config)``. Raises ``ValueError`` naming the ids probably
    meant and listing the valid forms for anything else. See the module docstring for
    ``reproduce_original``."""
    cls, config, _ = lookup(estimator_id, reproduce_original)
    return cls, config


def describe_estimator_id(estimator_id: str, reproduce_original: bool = False) -> EstimatorId:
    """The structured description of an identifier (family, typed parameters, label, canonical
    key) from the same parse as ``parse_estimator_id``; the same ``ValueError`` for bad ids."""
    return lookup(estimator_id, reproduce_original)[2]
