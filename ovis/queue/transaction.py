"""Transactions of the queue database: what one ``RunDatabase.transaction()`` sees and changes,
and the record helpers every change uses (history, status, fields of an attempt)."""
import math
import time
from typing import Callable, Dict, List, Optional, Tuple

from ovis.queue.journal import DocIds, View
from ovis.queue.storage import Tables

QUEUED, RUNNING, SUCCESS, FAILED, ABORTED = "queued", "running", "success", "failed", "aborted"
STATUSES = (QUEUED, RUNNING, SUCCESS, FAILED, ABORTED)
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
                pid_start=None, device=None, returncode=None, error=None, failure=None, failure_detail=None,
                job_id=None)


def claim_order(doc_id: str, record: dict) -> tuple:
    """Runs are claimed in this order: those started before first, then by grid index."""
    index = record.get("index")
    return (0 if record.get("attempts") else 1, index if isinstance(index, int) and not isinstance(index, bool)
            else math.inf, int(doc_id) if doc_id.isdigit() else math.inf)


def _queued_in_order(tables: Tables) -> List[Tuple[tuple, str]]:
    runs = tables.get(RUNS_TABLE, {})
    return sorted((claim_order(doc_id, r), doc_id) for doc_id, r in runs.items() if r.get("status") == QUEUED)


def _run_id_index(tables: Tables) -> Dict[object, str]:
    return {record.get("run_id"): doc_id for doc_id, record in tables.get(RUNS_TABLE, {}).items()}


def precompute(view: View) -> None:
    """Compute what claims and finds derive from ``.db.json`` (once per version of it), before
    taking the lock: 55 ms at 20,000 runs that would otherwise hold it after each compaction."""
    view.base.memo("queued in order", _queued_in_order)
    view.base.memo("run_id index", _run_id_index)


class Transaction:
    """What a transaction sees and changes: ``runs`` maps document ids to records. Records are
    replaced (``put``), never mutated in place; ``put`` and ``removed`` name, per table, the
    document ids that changed (``put`` None: rewrite every record)."""

    def __init__(self, view: View):
        self.view = view
        self.tables = {name: dict(docs) for name, docs in view.tables.items()}
        self.runs: Dict[str, dict] = self.tables.setdefault(RUNS_TABLE, {})
        self.put_ids: Optional[DocIds] = {}
        self.removed_ids: DocIds = {}
        self.fold = False  # rewrite .db.json with the journal folded in, even without changes
        self.callbacks: List[Callable[[], None]] = []
        self._added: Dict[object, str] = {}
        self._journal_ids: Optional[Dict[object, str]] = None
        self._next_id: Optional[int] = None

    @property
    def changed(self) -> bool:
        return self.fold or self.put_ids is None or any(self.put_ids.values()) or any(self.removed_ids.values())

    def find(self, run_id: str) -> Optional[Tuple[str, dict]]:
        if self._journal_ids is None:  # run_id -> doc id of the journal's records
            self._journal_ids = _run_id_index({RUNS_TABLE: (self.view.journal or {}).get(RUNS_TABLE, {})})
        doc_id = self._added.get(run_id) or self._journal_ids.get(run_id) or \
            self.view.base.memo("run_id index", _run_id_index).get(run_id)
        if doc_id is None or doc_id not in self.runs or self.runs[doc_id].get("run_id") != run_id:
            return None
        return doc_id, self.runs[doc_id]

    def next_queued(self) -> Optional[Tuple[str, dict]]:
        """The queued run to execute next (``claim_order``), without scanning every record: the
        first of ``.db.json``'s queued runs still as they were there, or a changed one."""
        base_runs = self.view.base.tables.get(RUNS_TABLE, {})
        best = None
        for key, doc_id in self.view.base.memo("queued in order", _queued_in_order):
            if self.runs.get(doc_id) is base_runs[doc_id]:
                best = (key, doc_id)
                break
        for doc_id in self.view.overlaid.get(RUNS_TABLE, set()) | (self.put_ids or {}).get(RUNS_TABLE, set()):
            record = self.runs.get(doc_id)
            if record is not None and record.get("status") == QUEUED:
                key = claim_order(doc_id, record)
                best = (key, doc_id) if best is None or key < best[0] else best
        return None if best is None else (best[1], self.runs[best[1]])

    def put(self, doc_id: str, record: dict, table: str = RUNS_TABLE) -> None:
        docs = self.tables.setdefault(table, {})
        if table == RUNS_TABLE and (doc_id not in docs or docs[doc_id].get("run_id") != record.get("run_id")):
            self._added[record.get("run_id")] = doc_id
        docs[doc_id] = record
        if self.put_ids is not None:
            self.put_ids.setdefault(table, set()).add(doc_id)
        self.removed_ids.get(table, set()).discard(doc_id)

    def insert(self, record: dict) -> str:
        if self._next_id is None:
            self._next_id = max((int(k) for k in self.runs if k.isdigit()), default=0) + 1
        doc_id, self._next_id = str(self._next_id), self._next_id + 1
        self.put(doc_id, record)
        return doc_id

    def remove(self, doc_id: str) -> None:
        self._added.pop(self.runs.pop(doc_id).get("run_id"), None)
        self.removed_ids.setdefault(RUNS_TABLE, set()).add(doc_id)
        if self.put_ids is not None:
            self.put_ids.get(RUNS_TABLE, set()).discard(doc_id)

    def set_meta(self, meta: dict) -> None:
        for doc_id in set(self.tables.get(META_TABLE, {})) - {"1"}:
            del self.tables[META_TABLE][doc_id]
            self.removed_ids.setdefault(META_TABLE, set()).add(doc_id)
        self.put("1", meta, META_TABLE)

    def replace_all(self, tables: Tables) -> None:
        """Every table replaced by ``tables`` (a user's write through ``QueueStorage``)."""
        self.tables, self.put_ids = tables, None
        self.runs = tables.setdefault(RUNS_TABLE, {})

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the database write succeeded (still under the lock)."""
        self.callbacks.append(callback)
