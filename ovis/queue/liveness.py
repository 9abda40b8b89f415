"""Heartbeats and child processes of running runs, kept outside the database.

A running run's executor writes ``<exp_dir>/.live/<run_id>.json`` (atomically, ``ovis.files``)
when its child starts and at every heartbeat: ``owner`` (the manager or Slurm task), ``attempt``,
``pid`` / ``pid_start`` of the child and ``heartbeat`` (epoch seconds). A heartbeat therefore costs
one small file write and never takes the database lock. ``merge`` lays the file over the
database record (only when it belongs to the record's current owner and attempt; a file left by
an earlier attempt is ignored), which is what ``read_runs``, recovery and requeueing use to tell
live runs from dead ones. ``finish`` copies the last values into the record and removes the file.
"""
import contextlib
import json
import os
import time
from typing import Optional

from ovis.files import atomic_write
from ovis.launch import PROCESS_LOG

LIVE_FOLDER = ".live"
LOG_TAIL_LINES = 20
LOG_TAIL_BYTES = 16384


def live_path(exp_dir: str, run_id: str) -> str:
    return os.path.join(exp_dir, LIVE_FOLDER, run_id + ".json")


def write_liveness(exp_dir: str, record: dict, pid: Optional[int] = None, pid_start: Optional[str] = None) -> None:
    """Record that the run of ``record`` (as claimed) is alive now, with its child process."""
    os.makedirs(os.path.join(exp_dir, LIVE_FOLDER), exist_ok=True)
    state = dict(owner=record.get("owner"), attempt=record.get("attempts"), pid=pid, pid_start=pid_start,
                 heartbeat=round(time.time(), 3))
    atomic_write(live_path(exp_dir, record["run_id"]), json.dumps(state))


def read_liveness(exp_dir: str, run_id: str) -> Optional[dict]:
    try:
        with open(live_path(exp_dir, run_id)) as f:
            state = json.load(f)
    except (OSError, ValueError):  # absent, or being replaced on a file system without atomic rename
        return None
    return state if isinstance(state, dict) else None


def merge(exp_dir: str, record: dict) -> dict:
    """``record`` with the heartbeat and child process of its live file, when there is one for
    its current owner and attempt."""
    run_id = record.get("run_id")
    if record.get("status") != "running" or not isinstance(run_id, str):
        return record
    state = read_liveness(exp_dir, run_id)
    if not state or state.get("owner") != record.get("owner") or state.get("attempt") != record.get("attempts"):
        return record
    merged = dict(record, heartbeat=max(state.get("heartbeat") or 0.0, record.get("heartbeat") or 0.0))
    if state.get("pid"):
        merged.update(pid=state["pid"], pid_start=state.get("pid_start"))
    return merged


def remove_liveness(exp_dir: str, run_id: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(live_path(exp_dir, run_id))


def log_tail(run_dir: str, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of the run's ``process.log`` after byte ``offset`` ('' if none)."""
    try:
        with open(os.path.join(run_dir, PROCESS_LOG), "rb") as f:
            size = f.seek(0, os.SEEK_END)
            f.seek(max(offset, size - LOG_TAIL_BYTES))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])
