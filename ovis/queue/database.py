"""The queue database: one TinyDB record per run in ``<exp_dir>/.db.json`` (and, for large
queues, the records changed since its last rewrite in ``<exp_dir>/.db.journal.json``).

Safety rules:

* every read-modify-write happens in ``RunDatabase.transaction()``, under a
  ``filelock.FileLock`` on ``<exp_dir>/.db.json.lock`` (managers on several machines sharing the
  folder exclude each other; a kill releases the lock with its process);
* a transaction works on a copy of the tables and writes one file once (the journal, or
  ``.db.json`` with the journal folded in: ``ovis.queue.journal``), at its end, and only if
  nothing raised: all or nothing, whatever its size. Work on files (outcome markers, run
  folders) is registered with ``after_commit`` and runs only once the database write succeeded,
  still under the lock;
* the write is atomic (``ovis.files.atomic_open``): a kill at any moment leaves either the old or
  the new database, never a torn one, and temporary files left by killed writers are removed at
  the next transaction. Readers therefore need no lock (``ovis.queue.view.read_runs``);
* a file that is not a valid database (hand edits, binary garbage) is refused with a message,
  after saving a copy; nothing overwrites it. Read-only files or folders and full disks get one
  message naming the file and what to do; nothing is changed.
* heartbeats and the run's child process live in per-run files (``ovis.queue.liveness``), so a
  running run never takes the lock between its claim and its finish.

The file layout and its cache are in ``ovis.queue.storage`` (one record a line; ``TinyDB(path)``
opens it), the journal in ``ovis.queue.journal``, the lock in ``ovis.queue.lock``. Record fields:
``run_id``, ``index`` (grid position), ``args`` (argument string; ``argv`` is
``shlex.split(args)``, added by ``records()``), ``params`` (canonical options), ``status``
(``STATUSES``), ``created``, ``started``, ``finished``, ``heartbeat`` (epoch seconds), ``host``,
``owner`` (manager or Slurm task: host, pid, start time), ``pid`` / ``pid_start`` (the run's
process), ``device``, ``attempts``, ``returncode``, ``error`` (tail of the failure output),
``job_id`` (Slurm), ``stale_after`` and ``history`` (recent ``[time, status, note]`` transitions).
"""
import contextlib
import os
import shlex
import shutil
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

from ovis.files import remove_stale_temporaries
from ovis.queue import liveness, salvage
from ovis.queue.journal import JOURNAL_FROM_BYTES, JournaledStore, View
from ovis.queue.lock import QueueLock
from ovis.queue.process import ProcessIdentity, run_is_alive
from ovis.queue.requeue import requeue_candidates
from ovis.queue.storage import CorruptDatabase, DatabaseError, Tables, backup_copy, os_error_advice
from ovis.queue.transaction import (ABORTED, FAILED, META_TABLE, QUEUED, RUNNING, RUNS_TABLE, STATUSES, SUCCESS,
                                    Transaction, add_history, precompute, runtime_fields, set_status)

DB_FILE = ".db.json"
JOURNAL_FILE = ".db.journal.json"
LOCK_FILE = DB_FILE + ".lock"
HOLDER_FILE = LOCK_FILE + ".holder"

class UnreadableDatabase(DatabaseError):
    """``.db.json`` or its journal is not a valid database file (``RunDatabase.salvage`` rebuilds it)."""


class RunDatabase:
    """The queue of one experiment folder. ``on_wait(message)`` is told when the lock is held by
    someone else for more than ``ovis.queue.lock.LOCK_NOTICE_AFTER`` seconds. Databases of at least
    ``journal_from_bytes`` get a journal (``ovis.queue.journal``)."""

    def __init__(self, exp_dir: str, lock_timeout: float = 120.0, on_wait: Optional[Callable[[str], None]] = None,
                 journal_from_bytes: int = JOURNAL_FROM_BYTES):
        self.exp_dir = os.path.abspath(exp_dir)
        self.path = os.path.join(self.exp_dir, DB_FILE)
        self.journal_path = os.path.join(self.exp_dir, JOURNAL_FILE)
        self.lock_path = os.path.join(self.exp_dir, LOCK_FILE)
        self._lock = QueueLock(self.lock_path, lock_timeout, on_wait)
        self._thread_lock = threading.RLock()
        self._store = JournaledStore(self.path, self.journal_path, journal_from_bytes)

    @property
    def exists(self) -> bool:
        return os.path.exists(self.path)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.exp_dir, run_id)

    # -- the files and their lock ----------------------------------------------------------

    def _read(self) -> Optional[View]:
        try:
            return self._store.read()
        except CorruptDatabase as error:
            self._refuse(str(error), error.path or self.path)
        except OSError as error:
            raise os_error_advice(error, error.filename or self.path, "read") from None

    def _refuse(self, problem: str, path: str) -> None:
        try:
            backup = f"a copy was saved to {backup_copy(path)}"
        except OSError as error:
            backup = f"no copy could be saved ({error.strerror})"
        raise UnreadableDatabase(
            f"the queue database {path} cannot be read: {problem}; {backup}. Run dbutils.py --exp "
            f"{os.path.basename(self.exp_dir)} --root {os.path.dirname(self.exp_dir)} --repair: it keeps every "
            f"intact record, names the lost ones and takes their status from their run folders (outcome.txt, "
            f"live processes), so no finished run runs again.")

    def salvage(self) -> List[str]:
        """Rebuild an unreadable ``.db.json`` or journal from their intact lines (``ovis.queue.salvage``);
        returns what was kept and lost (empty when both were readable)."""
        report: List[str] = []
        with self._thread_lock:
            lock = self._acquire()
            try:
                salvage.rebuild(self._store, self.run_dir, report)
            except OSError as error:
                raise os_error_advice(error, error.filename or self.path, "rebuild") from None
            finally:
                lock.release()
        return report

    def _acquire(self):
        return self._lock.acquire()

    def purge_lock(self) -> bool:
        """Remove the lock file when no process holds the lock; refuse (DatabaseError) when one does."""
        return self._lock.purge()

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """Exclusive access: yields a ``Transaction`` written atomically, once, at the end (and
        dropped if the block raises); then its ``after_commit`` callbacks run, under the lock."""
        with self._thread_lock:
            try:
                os.makedirs(self.exp_dir, exist_ok=True)
            except OSError as error:
                raise os_error_advice(error, self.path, "create the folder of") from None
            with contextlib.suppress(DatabaseError):
                view = self._read()  # catch up with other writers before taking the lock: less work under it
                if view is not None:
                    precompute(view)
            lock = self._acquire()
            try:
                for path in (self.path, self.journal_path):
                    with contextlib.suppress(OSError):
                        remove_stale_temporaries(path)
                view = self._read() or self._store.empty_view()
                transaction = Transaction(view)
                yield transaction
                if transaction.changed:
                    try:
                        self._store.write(view, transaction.tables, transaction.put_ids, transaction.removed_ids,
                                          transaction.fold)
                    except OSError as error:
                        raise os_error_advice(error, self._written_path(error), "write") from None
                _run_callbacks(transaction.callbacks, self.path)
            finally:
                lock.release()

    def _written_path(self, error: OSError) -> str:
        failed = os.path.basename(str(error.filename2 or error.filename or ""))
        return self.journal_path if failed.startswith(JOURNAL_FILE) else self.path

    def compact(self) -> bool:
        """Fold the journal into ``.db.json`` (then ``TinyDB(path)`` alone sees every change);
        False when there was no journal."""
        with self.transaction() as transaction:
            transaction.fold = transaction.view.journal_exists
        return transaction.fold

    # -- reading ---------------------------------------------------------------------------

    def records(self) -> List[dict]:
        """All records in grid order (copies), read without the lock (writes are atomic)."""
        view = self._read()
        if view is None:
            raise FileNotFoundError(f"no queue database in {self.exp_dir} ({DB_FILE} is missing): "
                                    f"run manager.py --exp {os.path.basename(self.exp_dir)} first")
        return sorted((dict(r) for r in view.tables.get(RUNS_TABLE, {}).values()), key=_grid_order)

    def tables(self) -> Optional[Tables]:
        """Every table, the journal applied (shared: never modify), or None without a database."""
        view = self._read()
        return None if view is None else view.tables

    def meta(self) -> dict:
        view = self._read()
        return dict(next(iter(view.tables.get(META_TABLE, {}).values()), {})) if view else {}

    # -- writing ---------------------------------------------------------------------------

    def add_runs(self, points: Iterable, meta: Optional[dict] = None) -> List[str]:
        """Insert the grid points not yet in the database (as ``queued``); return their ids."""
        now = time.time()
        added = []
        with self.transaction() as transaction:
            next_index = max((r.get("index", 0) for r in transaction.runs.values()), default=-1) + 1
            for point in points:
                if transaction.find(point.run_id) is not None:
                    continue
                record = dict(run_id=point.run_id, index=next_index, args=point.args, params=dict(point.params),
                              status=QUEUED, created=now, attempts=0, history=[], stale_after=None,
                              **runtime_fields())
                if not os.path.isdir(self.run_dir(point.run_id)):
                    add_history(record, QUEUED, "added from the spec")
                else:  # its record was removed or lost: its folder tells how it ended (a success never runs again)
                    why = "re-added from the spec: its folder existed (record removed or lost), earlier history lost"
                    record = salvage.reconcile(self.exp_dir, self.run_dir(point.run_id), record, why)[0]
                    if not record["history"]:
                        add_history(record, QUEUED, why + "; no outcome in it: it resumes from its checkpoint")
                transaction.insert(record)
                added.append(point.run_id)
                next_index += 1
            if meta is not None:
                merged = dict(transaction.tables.get(META_TABLE, {}).get("1") or {"created": now})
                merged.update(meta, updated=now)
                transaction.set_meta(merged)
        return added

    def claim(self, owner: ProcessIdentity, device: str, stale_after: float, run_id: Optional[str] = None,
              job_id: Optional[str] = None) -> Optional[dict]:
        """Atomically take a queued run (``run_id``, or the next one: previously started runs
        first, then grid order) and mark it ``running`` for ``owner``; None if there is none.
        The returned record has ``argv``."""
        with self.transaction() as transaction:
            if run_id is not None:
                found = transaction.find(run_id)
                chosen = found if found is not None and found[1].get("status") == QUEUED else None
            else:
                chosen = transaction.next_queued()
            if chosen is None:
                return None
            doc_id, document = chosen
            now = time.time()
            record = dict(document)
            set_status(record, RUNNING, f"claimed by {owner} on {device}", started=now, finished=None, heartbeat=now,
                 host=owner.host, owner=owner.to_dict(), pid=None, pid_start=None, device=device,
                 attempts=record.get("attempts", 0) + 1, returncode=None, error=None,
                 stale_after=stale_after, job_id=job_id if job_id is not None else record.get("job_id"))
            transaction.put(doc_id, record)
            transaction.after_commit(lambda: liveness.remove_liveness(self.exp_dir, record["run_id"]))
        return dict(record, argv=list(record.get("argv") or shlex.split(record.get("args", ""))))

    def set_process(self, record: dict, child: ProcessIdentity) -> bool:
        """Record the child process of a claimed run (in its liveness file, not the database)."""
        return self.heartbeat(record, child)

    def heartbeat(self, record: dict, child: Optional[ProcessIdentity] = None) -> bool:
        """Refresh the liveness file of a claimed run; False when it cannot be written."""
        try:
            liveness.write_liveness(self.exp_dir, record, child.pid if child else None,
                                    child.start_time if child else None)
            return True
        except OSError:
            return False

    def finish(self, run_id: str, owner: ProcessIdentity, status: str, note: str = "", **fields) -> bool:
        """Record the outcome of an owned run (``success``, ``failed``, ``aborted`` or ``queued``);
        False when ``owner`` does not own it any more."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        now = time.time()
        with self.transaction() as transaction:
            found = transaction.find(run_id)
            if found is None or found[1].get("status") != RUNNING or found[1].get("owner") != owner.to_dict():
                return False
            record = dict(liveness.merge(self.exp_dir, found[1]))
            set_status(record, status, note, finished=now, heartbeat=now, **fields)
            transaction.put(found[0], record)
            transaction.after_commit(lambda: liveness.remove_liveness(self.exp_dir, run_id))
        return True

    def take_back(self, run_id: str, job_id: str, note: str) -> bool:
        """Queue again a run that Slurm requeued (same job id): its earlier attempt ended
        ``aborted`` or its process is gone. False when the run is anything else."""
        with self.transaction() as transaction:
            found = transaction.find(run_id)
            if found is None or found[1].get("job_id") != job_id:
                return False
            record = dict(liveness.merge(self.exp_dir, found[1]))
            status = record.get("status")
            if not (status == ABORTED or (status == RUNNING and not run_is_alive(record))):
                return False
            record.update(runtime_fields(), job_id=job_id)
            set_status(record, QUEUED, note)
            transaction.put(found[0], record)
        return True

    def set_job_ids(self, job_ids: Dict[str, str]) -> None:
        with self.transaction() as transaction:
            for run_id, job_id in job_ids.items():
                found = transaction.find(run_id)
                if found is None:
                    continue
                record = dict(found[1], job_id=job_id)
                add_history(record, record.get("status", QUEUED), f"submitted as Slurm job {job_id}")
                transaction.put(found[0], record)

    def recover(self, by: str) -> List[dict]:
        """Mark ``running`` runs whose owner and process are gone as ``aborted`` (with the end of
        their log); return them."""
        recovered = []
        with self.transaction() as transaction:
            now = time.time()
            for doc_id, document in list(transaction.runs.items()):
                if document.get("status") != RUNNING or not isinstance(document.get("run_id"), str):
                    continue
                record = dict(liveness.merge(self.exp_dir, document))
                if run_is_alive(record, now):
                    continue
                where = f"{record.get('host')} pid {record.get('pid') or (record.get('owner') or {}).get('pid')}"
                tail = liveness.log_tail(self.run_dir(record["run_id"]))
                set_status(record, ABORTED, f"process gone ({where}); found by {by}", finished=now,
                     error=f"the run's process ({where}) ended without reporting (killed manager or machine)"
                           + (f"; last lines of its log:\n{tail}" if tail else ""))
                transaction.put(doc_id, record)
                recovered.append(record)
        return recovered

    def requeue(self, level: int, run_ids: Optional[Sequence[str]] = None, note: str = "",
                prepare: Optional[Callable[[str], None]] = None) -> Dict[str, List[str]]:
        """Queue again the runs of ``REQUEUE_LEVELS[level]`` (restricted to ``run_ids`` if given),
        in one write; ``prepare(run_dir)`` runs for each of them only after that write succeeded,
        before the lock is released (nobody can claim them meanwhile). Returns
        ``{previous status: [run ids]}``."""
        requeued: Dict[str, List[str]] = {}
        with self.transaction() as transaction:
            merged = {doc_id: liveness.merge(self.exp_dir, r) for doc_id, r in transaction.runs.items()}
            chosen = {id(r) for r in requeue_candidates(merged.values(), level, run_ids)}
            for doc_id, document in merged.items():
                if id(document) not in chosen:
                    continue
                record = dict(transaction.runs[doc_id])
                status = record["status"]
                record.update(runtime_fields())
                set_status(record, QUEUED, note or f"requeued (level {level}, was {status})")
                transaction.put(doc_id, record)
                requeued.setdefault(status, []).append(record["run_id"])
                run_id = record["run_id"]
                transaction.after_commit(lambda run_id=run_id: liveness.remove_liveness(self.exp_dir, run_id))
                if prepare is not None:
                    transaction.after_commit(lambda run_id=run_id: prepare(self.run_dir(run_id)))
        return requeued

    def delete(self) -> None:
        """Remove the database, its journal, its lock and the liveness files."""
        for name in (JOURNAL_FILE, DB_FILE, LOCK_FILE, HOLDER_FILE):
            try:
                os.remove(os.path.join(self.exp_dir, name))
            except FileNotFoundError:
                pass
            except OSError as error:
                raise os_error_advice(error, os.path.join(self.exp_dir, name), "delete") from None
        shutil.rmtree(os.path.join(self.exp_dir, liveness.LIVE_FOLDER), ignore_errors=True)


def _grid_order(record: dict) -> tuple:
    index = record.get("index")
    return (0, index) if isinstance(index, int) else (1, 0)


def _run_callbacks(callbacks: List[Callable[[], None]], path: str) -> None:
    errors = []
    for callback in callbacks:
        try:
            callback()
        except OSError as error:
            errors.append(f"{error.filename or ''}: {error.strerror or error}")
    if errors:
        raise DatabaseError(f"the queue database {path} was updated, but {len(errors)} file operation(s) on run "
                            f"folders failed: " + "; ".join(errors[:5]))


__all__ = ["RunDatabase", "DatabaseError", "UnreadableDatabase", "STATUSES",
           "QUEUED", "RUNNING", "SUCCESS", "FAILED", "ABORTED"]
