"""The read-only view of an experiment's queue that reports and scripts read (no lock needed:
``RunDatabase`` writes atomically)."""
import os
import time
from typing import List

from ovis.queue import liveness
from ovis.queue.database import RunDatabase
from ovis.queue.process import run_is_alive
from ovis.queue.transaction import RUNNING


def read_runs(exp_dir: str) -> List[dict]:
    """Read-only view of an experiment's queue, in grid order, for reports and scripts.

    ``exp_dir``: the experiment's folder, ``<root>/<exp>`` (``runs/quickstart``), the folder
    that holds ``.db.json``, not the file itself.

    Each dict holds the record's fields (``run_id``, ``status``, ``args``, ``params``,
    ``created``/``started``/``finished``/``heartbeat`` epoch seconds, ``host``, ``pid``,
    ``device``, ``attempts``, ``error``, ...) plus ``run_dir`` (absolute path of the run folder),
    ``message`` (first line of ``error``) and ``alive`` (for ``running`` runs: whether the process
    is still there). Records without a ``run_id`` (hand edits; ``dbutils.py --check`` reports them)
    are left out. Raises FileNotFoundError when the experiment has no database and DatabaseError
    when it is unreadable."""
    if os.path.isfile(exp_dir):
        raise ValueError(f"read_runs({exp_dir!r}): pass the experiment's folder, which holds the queue file: "
                         f"read_runs({os.path.dirname(os.path.abspath(exp_dir))!r})")
    database = RunDatabase(exp_dir)
    now = time.time()
    view = []
    for record in database.records():
        if not isinstance(record.get("run_id"), str):
            continue
        record = liveness.merge(database.exp_dir, record)
        record["run_dir"] = database.run_dir(record["run_id"])
        record["message"] = next(iter((record.get("error") or "").strip().splitlines()), "")  # its first line
        record["alive"] = record.get("status") == RUNNING and run_is_alive(record, now)
        view.append(record)
    return view
