"""Plain-text records a run leaves in its folder, readable without TensorBoard.

One module owns the formats so that the training loop (writer), the queue (outcome) and
the reports (reader) cannot drift apart.

Run folder ``<root>/<exp>/<run_id>/``:

* ``config.json``   every option of the run (``read_config``).
* ``metrics.jsonl`` one JSON object per line and per (step, split) evaluation::

      {"step": 1200, "epoch": 3, "split": "test", "time": 35.2,
       "values": {"loss/L_k": -95.1, "loss/ess": 2.7, ...}}

  ``split`` is the writer name (``train``, ``test``, ``valid``); reports address a metric as
  ``<split>:<key>`` (``test:loss/L_k``).
* ``outcome.txt``   the outcome marker; first line ``Success.``, ``Aborted by User.`` or
  ``Failed. <message>`` (then the traceback). Runs written before this name was chosen have it
  as ``success.txt`` (``LEGACY_OUTCOME_FILE``), which ``outcome_path`` / ``read_outcome`` still read.
"""
import json
import math
import os
import time
from typing import Callable, Dict, Iterator, List, Optional

from ovis.files import atomic_open, remove_stale_temporaries

METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.json"
OUTCOME_FILE = "outcome.txt"
LEGACY_OUTCOME_FILE = "success.txt"  # the marker's former name: read, never written

SUCCESS = "success"
ABORTED = "aborted"
FAILED = "failed"
OUTCOME_FIRST_LINE = {SUCCESS: "Success.", ABORTED: "Aborted by User.", FAILED: "Failed."}
# Metrics that measure time: they differ between two runs that compute the same values
TIMING_METRICS = frozenset({"info/elapsed-time", "info/training-time", "info/training-cpu-time"})


def _finite_or_none(value: float) -> Optional[float]:
    value = float(value)
    return value if math.isfinite(value) else None


class MetricsWriter:
    """Appends evaluation records to ``metrics.jsonl``; each line is flushed at once so a
    killed run keeps every record written before the kill."""

    def __init__(self, run_dir: str):
        self.path = os.path.join(run_dir, METRICS_FILE)

    def write(self, step: int, split: str, values: Dict[str, float], epoch: Optional[int] = None) -> None:
        record = {"step": int(step), "epoch": None if epoch is None else int(epoch), "split": split,
                  "time": time.time(), "values": {k: _finite_or_none(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (used when resuming from an older checkpoint,
        so that a resumed run has the same curve as an unbroken one)."""
        rewrite_metrics(os.path.dirname(self.path), lambda record: record["step"] <= step)


def rewrite_metrics(run_dir: str, keep: Callable[[dict], bool]) -> None:
    """Keep only the records of ``metrics.jsonl`` for which ``keep(record)`` is true (atomically)."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return
    kept = [record for record in iter_metric_records(run_dir) if keep(record)]
    with atomic_open(path) as f:
        f.writelines(json.dumps(record) + "\n" for record in kept)


# Metrics renamed since runs were first recorded: old key -> current key. Readers see the current
# names, in old runs too (``iter_metric_records``, ``current_metric_name``).
RENAMED_METRICS = {
    "reinforce/mse": "control_variate/mse",  # reported by every score-function estimator
    "gmm/prior_mse": "gmm/prior_distance",  # Euclidean distances, not mean squared errors
    "gmm/posterior_mse": "gmm/posterior_distance",
    **{f"gaussian_toy/mse_{name}": f"gaussian_toy/distance_{name}" for name in ("A", "b", "mu", "phi")},
}


def current_metric_name(name: str) -> str:
    """The current name of a metric key (``gmm/prior_mse``) or address (``test:gmm/prior_mse``)."""
    split, colon, key = name.rpartition(":")
    return split + colon + RENAMED_METRICS.get(key, key)


def iter_metric_records(run_dir: str) -> Iterator[dict]:
    """Yield the records of ``metrics.jsonl`` (metrics under their current names,
    ``RENAMED_METRICS``); a torn last line (killed writer) is skipped."""
    path = os.path.join(run_dir, METRICS_FILE)
    if not os.path.exists(path):
        return
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            record["values"] = {RENAMED_METRICS.get(key, key): value for key, value in record["values"].items()}
            yield record


def read_metrics(run_dir: str, keys: Optional[List[str]] = None):
    """Long-format pandas DataFrame with columns ``step, epoch, split, key, metric, value``
    where ``metric = '<split>:<key>'``. ``keys`` filters on ``metric`` when given."""
    import pandas as pd

    rows = []
    wanted = {current_metric_name(key) for key in keys} if keys else None
    for r in iter_metric_records(run_dir):
        for key, value in r["values"].items():
            metric = f"{r['split']}:{key}"
            if wanted is None or metric in wanted:
                rows.append((r["step"], r.get("epoch"), r["split"], key, metric,
                             float("nan") if value is None else value))
    return pd.DataFrame(rows, columns=["step", "epoch", "split", "key", "metric", "value"])


def write_config(run_dir: str, config: dict) -> None:
    with atomic_open(os.path.join(run_dir, CONFIG_FILE)) as f:
        json.dump(config, f, indent=2, sort_keys=True, default=str)


def read_config(run_dir: str) -> Optional[dict]:
    path = os.path.join(run_dir, CONFIG_FILE)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def write_outcome(run_dir: str, outcome: str, message: str = "") -> None:
    """Write the outcome marker atomically; ``outcome`` is SUCCESS, ABORTED or FAILED."""
    text = OUTCOME_FIRST_LINE[outcome]
    if message:
        text += (" " if outcome == FAILED else "\n") + message
    with atomic_open(os.path.join(run_dir, OUTCOME_FILE)) as f:
        f.write(text)


def outcome_path(run_dir: str) -> str:
    """The outcome marker of ``run_dir``: ``outcome.txt``, or the legacy ``success.txt`` of older
    runs when only that exists."""
    path = os.path.join(run_dir, OUTCOME_FILE)
    legacy = os.path.join(run_dir, LEGACY_OUTCOME_FILE)
    return legacy if not os.path.exists(path) and os.path.exists(legacy) else path


def read_outcome(run_dir: str) -> Optional[str]:
    """SUCCESS, ABORTED or FAILED from the marker; ``None`` when the run has not ended
    (no marker) or the folder does not exist; ``'unknown'`` for any other content."""
    path = outcome_path(run_dir)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        first = f.readline().strip()
    for outcome, line in OUTCOME_FIRST_LINE.items():
        if first.startswith(line):
            return outcome
    return "unknown"


def clear_outcome(run_dir: str) -> None:
    """Remove the outcome marker, and the temporary files of a marker write that was killed."""
    remove_stale_temporaries(os.path.join(run_dir, OUTCOME_FILE))
    for name in (OUTCOME_FILE, LEGACY_OUTCOME_FILE):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            os.remove(path)
