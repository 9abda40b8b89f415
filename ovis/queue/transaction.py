"""Transactions of the queue database: what one ``RunDatabase.transaction()`` sees and changes,
and the record helpers every change uses (history, status, fields of an attempt)."""
import time
from typing import Callable, Dict, List, Optional, Tuple

from ovis.queue.storage import Tables

RUNS_TABLE = "runs"
META_TABLE = "meta"
HISTORY_LENGTH = 20


def add_history(record: dict, status: str, note: str = "") -> None:
    history = list(record.get("history") or [])
    history.append([round(time.time(), 3), status, note])
    record["history"] = history[-HISTORY_LENGTH:]


def set_status(record: dict, status: str, note: str = "", **fields) -> None:
    record.update(fields)
    record["status"] = status
    add_history(record, status, note)


def runtime_fields() -> dict:
    """Fields of a run's last attempt, cleared when it is queued again."""
    return dict(started=None, finished=None, heartbeat=None, host=None, owner=None, pid=None,
                pid_start=None, device=None, returncode=None, error=None, job_id=None)


class Transaction:
    """What a transaction sees and changes: ``runs`` maps document ids to records. Records are
    replaced (``put``), never mutated in place."""

    def __init__(self, tables: Tables, index: Callable[[], Dict[object, str]]):
        self.tables = {name: dict(docs) for name, docs in tables.items()}
        self.runs: Dict[str, dict] = self.tables.setdefault(RUNS_TABLE, {})
        self.changed = False
        self.dirty: Optional[Dict[str, set]] = {RUNS_TABLE: set()}  # replaced ids; None: re-encode all
        self.callbacks: List[Callable[[], None]] = []
        self._index = index    # run_id -> doc id as read (shared: never modified here)
        self._added: Dict[object, str] = {}
        self._next_id: Optional[int] = None

    def find(self, run_id: str) -> Optional[Tuple[str, dict]]:
        doc_id = self._added.get(run_id) or self._index().get(run_id)
        if doc_id is None or doc_id not in self.runs or self.runs[doc_id].get("run_id") != run_id:
            return None
        return doc_id, self.runs[doc_id]

    def put(self, doc_id: str, record: dict) -> None:
        old = self.runs.get(doc_id)
        if old is None or old.get("run_id") != record.get("run_id"):
            self.dirty = None  # a new record or a new run_id: the table is encoded whole
            self._added[record.get("run_id")] = doc_id
        elif self.dirty is not None:
            self.dirty[RUNS_TABLE].add(doc_id)
        self.runs[doc_id] = record
        self.changed = True

    def insert(self, record: dict) -> str:
        if self._next_id is None:
            self._next_id = max((int(k) for k in self.runs if k.isdigit()), default=0) + 1
        doc_id, self._next_id = str(self._next_id), self._next_id + 1
        self.put(doc_id, record)
        return doc_id

    def remove(self, doc_id: str) -> None:
        self._added.pop(self.runs.pop(doc_id).get("run_id"), None)
        self.changed, self.dirty = True, None

    def set_meta(self, meta: dict) -> None:
        self.tables[META_TABLE] = {"1": meta}
        self.changed = True  # tables not in ``dirty`` are encoded whole

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the database write succeeded (still under the lock)."""
        self.callbacks.append(callback)
