"""Run identity: which options define what a run computes, and the hash that names it.

The one definition used by ``run.py`` (``ovis.training.arguments``: run id, ``config.json``'s
``hash``, the resume check), ``asymptotic_variance.py`` (``ovis.apps.asymptotic``), the queue
(``ovis.queue.spec.make_run_id``) and the reports (``ovis.reporting``: which options tell groups
of runs apart). Two option sets are the same run when they agree on every option outside
``EXECUTION_OPTIONS`` after ``canonical_value``:

* values are compared as typed values, so the spelling does not matter: ``--lr 3e-4`` and
  ``--lr 0.0003`` (and the queue's unparsed string ``"3e-4"``) are the same number, ``--nsteps
  4e6`` and ``--nsteps 4000000`` the same integer;
* the run length is part of the identity (``--epochs`` when given, else ``--nsteps``): it sets
  the learning-rate schedule, so a resumed or extended run with another length is another run;
* options that say where or how a run executes (folders, devices, threads, ``--compile``,
  data-loading workers, evaluation batch sizes, checkpoint timing, console output) are not;
* options the run does not read are not (``applicable_options``): ``--nsteps`` when ``--epochs``
  is given, and on the data sets that bring their own model (``gmm``, ``gaussian-toy``) the model
  options that model does not read (``--K``, ``--nlayers``, ...); their ``--model`` is that
  model, whatever the option said.

Run ids of the queue hash the options a spec gives; run.py's, every option: for the existing
specs, which give no option their model does not read, the ids are unchanged.

Top-level module (like ``ovis.files``): it imports nothing from ``ovis``, so every layer can use it.
"""
import argparse
import hashlib
import json
import math
from typing import Any, Dict, Mapping, Union

# Options (and config.json fields) that say where or how a run executes, not what it computes.
EXECUTION_OPTIONS = frozenset({
    "root", "data_root", "exp", "run_id", "hash", "script", "rf", "resume", "load", "device", "threads", "workers",
    "silent", "deterministic", "sequential_computation", "valid_bs", "test_bs", "checkpoint_interval",
    "draw_individual", "compile", "chunk_rows",
})

# Data sets that bring their own model (run.py trains it whatever --model says), the model options
# of run.py, and those each such model reads (ovis.models.MODELS; tests/test_identity.py checks it).
DATASET_MODELS = {"gmm": "gmm", "gaussian-toy": "gaussian-toy"}
REPRODUCTION_MODEL_OPTIONS = ("init", "output_bias_clip", "data_centring")  # ovis.training.reproduction_options
MODEL_OPTIONS = ("N", "K", "hdim", "nlayers", "depth", "prior", "learn_prior", "normalization", "dropout", "kdim",
                 *REPRODUCTION_MODEL_OPTIONS)
DATASET_MODEL_OPTIONS = {"gmm": ("N", "hdim"), "gaussian-toy": ()}

Options = Union[argparse.Namespace, Mapping[str, Any]]


def canonical_value(value: Any) -> Any:
    """The value as compared and hashed: numbers (and strings that spell a finite number) as
    ``int`` when integral, else ``float``; lists element-wise; anything else unchanged."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if not math.isfinite(number):
            return value
        value = number
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, (list, tuple)):
        return [canonical_value(item) for item in value]
    return value


def applicable_options(options: Options) -> Dict[str, Any]:
    """Option name -> value (as given) of every option that defines the run and that the run
    reads, sorted by name: the run's settings, as reports show them."""
    items = vars(options) if isinstance(options, argparse.Namespace) else dict(options)
    items = {name: value for name, value in items.items() if name not in EXECUTION_OPTIONS}
    own_model = DATASET_MODELS.get(items.get("dataset"))
    if own_model is not None:
        unread = set(MODEL_OPTIONS) - set(DATASET_MODEL_OPTIONS[own_model])
        items = {name: value for name, value in items.items() if name not in unread}
        if "model" in items:
            items["model"] = own_model
    epochs = canonical_value(items.get("epochs"))
    if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 0:
        items.pop("nsteps", None)  # the run length comes from --epochs
    return dict(sorted(items.items()))


def canonical_options(options: Options) -> Dict[str, Any]:
    """Option name -> canonical value of every option that defines the run, sorted by name (the
    model of a data set that brings its own is implied by ``dataset``, given or not)."""
    settings = applicable_options(options)
    if settings.get("dataset") in DATASET_MODELS:
        settings.pop("model", None)
    return {name: canonical_value(value) for name, value in settings.items()}


def run_hash(options: Options) -> str:
    """md5 (32 hex digits) of the canonical options as compact JSON: independent of the order and
    the spelling of the arguments, stable across Python versions."""
    text = json.dumps(canonical_options(options), sort_keys=True, separators=(",", ":"))
    return hashlib.md5(text.encode()).hexdigest()


def changed_options(options: Options, other: Options) -> list:
    """Names of the run-defining options on which ``options`` and ``other`` disagree."""
    first, second = canonical_options(options), canonical_options(other)
    return sorted(name for name in set(first) | set(second) if first.get(name) != second.get(name))
