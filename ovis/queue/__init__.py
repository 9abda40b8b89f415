"""The experiment queue: specs, their grid of runs, a TinyDB database and the backends that
execute it (``manager.py``, ``dbutils.py``).

Public API:
    read_runs(exp_dir) -> list[dict]       read-only view of an experiment's runs (reports); exp_dir
                                           is the experiment's folder (runs/NAME), not its .db.json
    load_spec(exp, experiments_dir)        validated ``experiments/<exp>.json``; ``.grid()``
    RunDatabase(exp_dir)                   the queue itself (claim, requeue, recover, ...)
    QueueStorage                           TinyDB(".../.db.json", storage=QueueStorage): the queue in TinyDB
    SpecError, DatabaseError               refused specs, unusable databases
    STATUSES                               queued, running, success, failed, aborted
"""
from ovis.queue.database import ABORTED, FAILED, QUEUED, RUNNING, STATUSES, SUCCESS, DatabaseError, RunDatabase
from ovis.queue.requeue import REQUEUE_LEVELS
from ovis.queue.view import read_runs
from ovis.queue.queue_storage import QueueStorage
from ovis.queue.spec import ExperimentSpec, GridPoint, SpecError, load_spec

__all__ = ["read_runs", "load_spec", "QueueStorage", "ExperimentSpec", "GridPoint", "RunDatabase", "SpecError",
           "DatabaseError", "STATUSES", "REQUEUE_LEVELS", "QUEUED", "RUNNING", "SUCCESS", "FAILED", "ABORTED"]
