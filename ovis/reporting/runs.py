"""Reading an experiment's runs for reports: statuses, options and metric curves.

The source of truth is each run folder's plain-text records (``ovis/records.py``):
``config.json``, ``metrics.jsonl`` and ``outcome.txt``. When the experiment has a queue
database, its view (``ovis.queue.read_runs``) adds the runs that have no folder yet
(queued, never started), so a report can say what is missing instead of dropping it.
Runs without ``metrics.jsonl`` fall back to their TensorBoard event files.
"""
import logging
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import pandas as pd

from ovis import records
from ovis.identity import EXECUTION_OPTIONS, canonical_value

log = logging.getLogger(__name__)

SUCCESS = records.SUCCESS
FAILED = records.FAILED
ABORTED = records.ABORTED
RUNNING = "running"
QUEUED = "queued"
UNKNOWN = "unknown"
STATUS_ORDER = (SUCCESS, RUNNING, QUEUED, FAILED, ABORTED, UNKNOWN)

# Run options that say where or how a run was executed, not what it computed: they never
# distinguish groups of runs in a report (the run identity's, ``ovis.identity``).
BOOKKEEPING_OPTIONS = EXECUTION_OPTIONS


@dataclass
class Run:
    """One run of an experiment as the report sees it.

    ``status`` is one of ``STATUS_ORDER``; ``config`` is ``None`` for queued runs that have
    no folder yet; ``message`` is the first line of the failure message, if any.
    """
    run_id: str
    status: str
    path: Optional[str] = None
    config: Optional[dict] = None
    message: str = ""
    failure: str = ""  # the queue's failure kind (``ovis.queue.failures``), if recorded

    @property
    def has_records(self) -> bool:
        return self.path is not None and self.config is not None


@dataclass
class ExperimentRuns:
    """Every run known for an experiment folder (folders and queue records)."""
    exp_dir: str
    runs: List[Run] = field(default_factory=list)
    skipped_folders: List[str] = field(default_factory=list)  # folders without config.json
    description: str = ""  # from the queue, which keeps the experiment spec's description

    def status_counts(self) -> Dict[str, int]:
        counts = {status: 0 for status in STATUS_ORDER}
        for run in self.runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        return {status: n for status, n in counts.items() if n > 0}

    def with_status(self, *statuses: str) -> List[Run]:
        return [run for run in self.runs if run.status in statuses]


def _failure_message(run_dir: str) -> str:
    path = records.outcome_path(run_dir)
    if not os.path.exists(path):
        return ""
    with open(path) as f:
        first = f.readline().strip()
    return first


def _folder_status(run_dir: str) -> str:
    outcome = records.read_outcome(run_dir)
    return RUNNING if outcome is None else outcome


def _queue_view(exp_dir: str) -> Tuple[List[dict], dict]:
    """The queue's records and metadata; nothing when the experiment was not run through it."""
    from ovis.queue import RunDatabase, read_runs

    try:
        return list(read_runs(exp_dir)), RunDatabase(exp_dir).meta()
    except FileNotFoundError:
        return [], {}


def scan_experiment(exp_dir: str) -> ExperimentRuns:
    """Collect the runs of ``exp_dir``: every non-hidden sub-folder with a ``config.json``,
    plus queue records without a folder. Queue statuses (which know about ``queued``) take
    precedence over the folder's marker."""
    if not os.path.isdir(exp_dir):
        raise FileNotFoundError(f"experiment folder {exp_dir!r} does not exist; check --root and --exp")
    experiment = ExperimentRuns(exp_dir)
    by_id: Dict[str, Run] = {}
    for name in sorted(os.listdir(exp_dir)):
        run_dir = os.path.join(exp_dir, name)
        if name.startswith(".") or not os.path.isdir(run_dir):
            continue
        config = records.read_config(run_dir)
        if config is None:
            experiment.skipped_folders.append(name)
            continue
        status = _folder_status(run_dir)
        message = _failure_message(run_dir) if status in (FAILED, UNKNOWN) else ""
        by_id[name] = Run(name, status, run_dir, config, message)
    queue_records, meta = _queue_view(exp_dir)
    experiment.description = meta.get("description", "") or ""
    for record in queue_records:
        run_id = record.get("run_id")
        if not run_id:
            continue
        status = record.get("status", UNKNOWN)
        if run_id in by_id:
            run = by_id[run_id]
            if status in STATUS_ORDER:
                run.status = status
            if status == RUNNING and record.get("alive") is False:
                run.message = "its process is gone (python dbutils.py --requeue ... queues it again)"
            elif status in (FAILED, ABORTED):
                run.message = run.message or record.get("message", "") or ""
                run.failure = record.get("failure") or ""
        else:  # not started, or stopped before writing its options (e.g. refused arguments)
            by_id[run_id] = Run(run_id, status if status in STATUS_ORDER else UNKNOWN,
                                message=record.get("message", "") or "", failure=record.get("failure") or "")
            if run_id in experiment.skipped_folders:
                experiment.skipped_folders.remove(run_id)
    experiment.runs = sorted(by_id.values(), key=lambda run: run.run_id)
    return experiment


def parse_where(conditions: Sequence[str]) -> Dict[str, List[object]]:
    """``option=value`` conditions -> option -> accepted values (an option given twice accepts either)."""
    where: Dict[str, List[object]] = {}
    for condition in conditions:
        name, equals, value = condition.partition("=")
        if not equals or not name:
            raise ValueError(f"--where {condition!r}: expected option=value (a run.py option as config.json "
                             f"names it, e.g. depth=1 or id=E2; repeat an option to accept several values)")
        where.setdefault(name, []).append(canonical_value(value))
    return where


def select_runs(runs: Sequence[Run], include: Sequence[str] = (), exclude: Sequence[str] = (),
                where: Optional[Dict[str, List[object]]] = None) -> List[Run]:
    """Keep a run if its id contains at least one ``include`` pattern (when any) and none of
    the ``exclude`` patterns, and its options have one of the ``where`` values of each option
    (``parse_where``; runs without options, not started, are dropped by a condition)."""
    kept = []
    for run in runs:
        if include and not any(pattern in run.run_id for pattern in include):
            continue
        if any(pattern in run.run_id for pattern in exclude):
            continue
        if where and not all(canonical_value((run.config or {}).get(name)) in values
                             for name, values in where.items()):
            continue
        kept.append(run)
    return kept


def _read_tensorboard(run_dir: str, metrics: Sequence[str]) -> pd.DataFrame:
    """Scalars ``<split>:<tag>`` from the event files under ``<run_dir>/<split>/``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows = []
    for metric in metrics:
        split, _, tag = metric.partition(":")
        split_dir = os.path.join(run_dir, split)
        if not os.path.isdir(split_dir):
            continue
        accumulator = EventAccumulator(split_dir, size_guidance={"scalars": 0})
        accumulator.Reload()
        if tag in accumulator.Tags().get("scalars", []):
            rows += [(event.step, metric, event.value) for event in accumulator.Scalars(tag)]
    return pd.DataFrame(rows, columns=["step", "metric", "value"])


def read_curves(run: Run, metrics: Sequence[str]) -> pd.DataFrame:
    """Long table ``step, metric, value`` of the requested metrics of one run, sorted by
    step; when a step was logged twice (a resumed run), the last record wins."""
    if os.path.exists(os.path.join(run.path, records.METRICS_FILE)):
        frame = records.read_metrics(run.path, keys=list(metrics))[["step", "metric", "value"]]
    else:
        frame = _read_tensorboard(run.path, metrics)
    frame = frame.drop_duplicates(subset=["step", "metric"], keep="last")
    return frame.sort_values(["metric", "step"], kind="stable").reset_index(drop=True)


def load_curves(runs: Sequence[Run], metrics: Sequence[str]) -> pd.DataFrame:
    """Curves of every run: columns ``run_id, step, metric, value``."""
    frames = []
    for run in runs:
        frame = read_curves(run, metrics)
        frame.insert(0, "run_id", run.run_id)
        frames.append(frame)
    if not frames:
        return pd.DataFrame(columns=["run_id", "step", "metric", "value"])
    return pd.concat(frames, ignore_index=True)


def add_experiment_options(parser, exp: str, output: str, root_required: bool = False) -> None:
    """``--exp`` (default ``exp``), ``--root`` and ``--output`` (help: ``output``) of the scripts
    that read one experiment's run folders."""
    parser.add_argument("--exp", default=exp, help="experiment name (runs under <root>/<exp>)")
    parser.add_argument("--root", required=root_required, default=None if root_required else "runs",
                        help="experiments root (the manager's --root)")
    parser.add_argument("--output", default="reports", help=output)


def read_experiment(parser, root: str, exp: str) -> List[Tuple[dict, pd.DataFrame]]:
    """``(config, metrics)`` of every run folder of ``<root>/<exp>`` with ``config.json`` and
    ``metrics.jsonl``, in folder order; a usage error naming the command that makes them when there is none."""
    folders = sorted(os.path.join(root, exp, name) for name in os.listdir(os.path.join(root, exp))) \
        if os.path.isdir(os.path.join(root, exp)) else []
    runs = [(records.read_config(folder), records.read_metrics(folder)) for folder in folders
            if os.path.isfile(os.path.join(folder, records.CONFIG_FILE))
            and os.path.isfile(os.path.join(folder, "metrics.jsonl"))]
    if not runs:
        parser.error(f"no run with metrics.jsonl under {os.path.join(root, exp)}; run the experiment first: "
                     f"python manager.py --exp {exp} --root {root}")
    return runs
