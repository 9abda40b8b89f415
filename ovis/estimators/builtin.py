"""The built-in estimator families: each module below declares ``FAMILIES`` next to its classes.
Adding a built-in estimator = its module (classes and ``FAMILIES``) and one line here."""
import importlib
from typing import Tuple

from .registry import EstimatorFamily

MODULES = ("pathwise", "wake_sleep", "score_function", "vimco", "ovis", "tvo", "baselines", "muprop", "rebar",
           "antithetic", "relaxed", "exact", "indecater", "double_cv", "arms", "rodeo",
           "unordered_set")


def builtin_families() -> Tuple[EstimatorFamily, ...]:
    return tuple(family for name in MODULES for family in importlib.import_module(f"{__package__}.{name}").FAMILIES)
