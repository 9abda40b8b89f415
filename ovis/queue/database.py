"""The queue database: one TinyDB record per run in ``<exp_dir>/.db.json``.

Safety rules:

* every read-modify-write happens in ``RunDatabase.transaction()``, under a
  ``filelock.FileLock`` on ``<exp_dir>/.db.json.lock`` (managers on several machines sharing the
  folder exclude each other; a kill releases the lock with its process);
* a transaction reads the file once and writes it once, at its end, and only if nothing raised;
* the write is atomic (temporary file in the same folder, fsync, ``os.replace``): a kill at any
  moment leaves either the old or the new database, never a torn one. Readers therefore need no
  lock (``read_runs``);
* a file that is not a valid database (hand edits) is refused with a message, after saving a
  copy; nothing overwrites it.

Record fields: ``run_id``, ``index`` (grid position), ``args`` (argument string), ``argv``,
``params`` (canonical options), ``status`` (``STATUSES``), ``created``, ``started``,
``finished``, ``heartbeat`` (epoch seconds), ``host``, ``owner`` (manager or Slurm task:
host, pid, start time), ``pid`` / ``pid_start`` (the run's process), ``device``, ``attempts``,
``returncode``, ``error`` (tail of the failure output), ``job_id`` (Slurm), ``stale_after`` and
``history`` (recent ``[time, status, note]`` transitions).
"""
import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence

import filelock
from tinydb import Query, TinyDB
from tinydb.middlewares import CachingMiddleware
from tinydb.storages import Storage

from ovis.queue.process import ProcessIdentity, run_is_alive

DB_FILE = ".db.json"
LOCK_FILE = DB_FILE + ".lock"
RUNS_TABLE = "runs"
META_TABLE = "meta"

QUEUED, RUNNING, SUCCESS, FAILED, ABORTED = "queued", "running", "success", "failed", "aborted"
STATUSES = (QUEUED, RUNNING, SUCCESS, FAILED, ABORTED)
HISTORY_LENGTH = 20

REQUEUE_LEVELS = {
    1: "aborted runs",
    2: "aborted and failed runs",
    3: "aborted, failed and running runs whose process is gone",
    4: "every run that is not running (success included)",
}


class DatabaseError(RuntimeError):
    """The queue database cannot be used (corrupted file, lock held too long); the message says
    what to do."""


class AtomicJSONStorage(Storage):
    """TinyDB storage that never leaves a partially written file behind."""

    def __init__(self, path: str):
        self.path = path

    def read(self) -> Optional[dict]:
        try:
            with open(self.path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            self._refuse(f"it is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})")
        if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
            self._refuse("it does not hold TinyDB tables (an object of objects)")
        return data

    def write(self, data: dict) -> None:
        tmp = f"{self.path}.{os.getpid()}.{threading.get_ident()}.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_directory(os.path.dirname(self.path))

    def close(self) -> None:
        pass

    def _backup(self) -> str:
        """Copy the unreadable file aside, once per distinct content."""
        folder, name = os.path.split(self.path)
        with open(self.path, "rb") as f:
            content = f.read()
        for existing in sorted(os.listdir(folder or ".")):
            if existing.startswith(name + ".corrupt-"):
                with open(os.path.join(folder, existing), "rb") as f:
                    if f.read() == content:
                        return os.path.join(folder, existing)
        backup = f"{self.path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
        shutil.copy2(self.path, backup)
        return backup

    def _refuse(self, problem: str) -> None:
        backup = self._backup()
        raise DatabaseError(
            f"the queue database {self.path} cannot be read: {problem}. A copy was saved to {backup}. "
            f"Fix the file by hand, or move it away and run manager.py again to re-create the queue "
            f"from the spec (run folders and their checkpoints are kept; finished runs are then "
            f"re-queued and resume from their checkpoints).")


def _fsync_directory(path: str) -> None:
    try:
        fd = os.open(path or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _add_history(record: dict, status: str, note: str = "") -> None:
    history = list(record.get("history", []))
    history.append([round(time.time(), 3), status, note])
    record["history"] = history[-HISTORY_LENGTH:]


def _set(record: dict, status: str, note: str = "", **fields) -> None:
    record.update(fields)
    record["status"] = status
    _add_history(record, status, note)


def _runtime_fields() -> dict:
    """Fields of a run's last attempt, cleared when it is queued again."""
    return dict(started=None, finished=None, heartbeat=None, host=None, owner=None, pid=None,
                pid_start=None, device=None, returncode=None, error=None, job_id=None)


class RunDatabase:
    """The queue of one experiment folder."""

    def __init__(self, exp_dir: str, lock_timeout: float = 120.0):
        self.exp_dir = os.path.abspath(exp_dir)
        self.path = os.path.join(self.exp_dir, DB_FILE)
        self.lock_path = os.path.join(self.exp_dir, LOCK_FILE)
        self.lock_timeout = lock_timeout
        self._thread_lock = threading.RLock()

    @property
    def exists(self) -> bool:
        return os.path.exists(self.path)

    def run_dir(self, run_id: str) -> str:
        return os.path.join(self.exp_dir, run_id)

    @contextmanager
    def transaction(self) -> Iterator[TinyDB]:
        """Exclusive access: yields a TinyDB whose changes are written atomically at the end
        (and dropped if the block raises)."""
        os.makedirs(self.exp_dir, exist_ok=True)
        with self._thread_lock:
            lock = filelock.FileLock(self.lock_path, timeout=self.lock_timeout)
            try:
                lock.acquire()
            except filelock.Timeout:
                raise DatabaseError(
                    f"could not lock {self.lock_path} within {self.lock_timeout:.0f} s: another manager.py or "
                    f"dbutils.py holds it. If no other process uses this experiment, the lock is stale "
                    f"(e.g. a file system without working locks): remove it with "
                    f"'python dbutils.py --exp {os.path.basename(self.exp_dir)} "
                    f"--root {os.path.dirname(self.exp_dir)} --purge_lock'") from None
            try:
                storage = CachingMiddleware(AtomicJSONStorage)
                db = TinyDB(self.path, storage=storage)
                yield db
                storage.flush()
            finally:
                lock.release()

    def purge_lock(self) -> bool:
        if os.path.exists(self.lock_path):
            os.remove(self.lock_path)
            return True
        return False

    def records(self) -> List[dict]:
        """All records in grid order, read without the lock (writes are atomic)."""
        data = AtomicJSONStorage(self.path).read()
        if data is None:
            raise FileNotFoundError(f"no queue database in {self.exp_dir} ({DB_FILE} is missing): "
                                    f"run manager.py --exp {os.path.basename(self.exp_dir)} first")
        return sorted((dict(r) for r in data.get(RUNS_TABLE, {}).values()), key=lambda r: r.get("index", 0))

    def meta(self) -> dict:
        data = AtomicJSONStorage(self.path).read() or {}
        tables = data.get(META_TABLE, {})
        return dict(next(iter(tables.values()))) if tables else {}

    # -- writing ---------------------------------------------------------------------------

    def add_runs(self, points: Iterable, meta: Optional[dict] = None) -> List[str]:
        """Insert the grid points not yet in the database (as ``queued``); return their ids."""
        now = time.time()
        added = []
        with self.transaction() as db:
            runs = db.table(RUNS_TABLE)
            known = {r["run_id"] for r in runs.all()}
            next_index = max((r.get("index", 0) for r in runs.all()), default=-1) + 1
            new_records = []
            for point in points:
                if point.run_id in known:
                    continue
                record = dict(run_id=point.run_id, index=next_index, args=point.args, argv=list(point.argv),
                              params=dict(point.params), status=QUEUED, created=now, attempts=0,
                              history=[], stale_after=None, **_runtime_fields())
                _add_history(record, QUEUED, "added from the spec")
                new_records.append(record)
                known.add(point.run_id)
                added.append(point.run_id)
                next_index += 1
            if new_records:
                runs.insert_multiple(new_records)
            if meta is not None:
                table = db.table(META_TABLE)
                previous = table.all()
                merged = dict(previous[0]) if previous else {"created": now}
                merged.update(meta, updated=now)
                table.truncate()
                table.insert(merged)
        return added

    def claim(self, owner: ProcessIdentity, device: str, stale_after: float, run_id: Optional[str] = None,
              job_id: Optional[str] = None) -> Optional[dict]:
        """Atomically take a queued run (``run_id``, or the next one: previously started runs
        first, then grid order) and mark it ``running`` for ``owner``; None if there is none."""
        with self.transaction() as db:
            runs = db.table(RUNS_TABLE)
            if run_id is not None:
                candidates = runs.search((Query().run_id == run_id) & (Query().status == QUEUED))
            else:
                candidates = runs.search(Query().status == QUEUED)
            if not candidates:
                return None
            document = min(candidates, key=lambda r: (r.get("attempts", 0) == 0, r.get("index", 0)))
            now = time.time()
            record = dict(document)
            _set(record, RUNNING, f"claimed by {owner} on {device}", started=now, finished=None, heartbeat=now,
                 host=owner.host, owner=owner.to_dict(), pid=None, pid_start=None, device=device,
                 attempts=record.get("attempts", 0) + 1, returncode=None, error=None,
                 stale_after=stale_after, job_id=job_id if job_id is not None else record.get("job_id"))
            runs.update(record, doc_ids=[document.doc_id])
            return record

    def _update_owned(self, run_id: str, owner: ProcessIdentity, change: Callable[[dict], None]) -> bool:
        """Apply ``change`` to the record if ``owner`` still owns it (running); False otherwise."""
        with self.transaction() as db:
            runs = db.table(RUNS_TABLE)
            found = runs.search(Query().run_id == run_id)
            if not found:
                return False
            record = dict(found[0])
            if record.get("status") != RUNNING or record.get("owner") != owner.to_dict():
                return False
            change(record)
            runs.update(record, doc_ids=[found[0].doc_id])
            return True

    def set_process(self, run_id: str, owner: ProcessIdentity, child: ProcessIdentity) -> bool:
        return self._update_owned(run_id, owner, lambda r: r.update(
            pid=child.pid, pid_start=child.start_time, heartbeat=time.time()))

    def heartbeat(self, run_id: str, owner: ProcessIdentity) -> bool:
        """Refresh the heartbeat; False if the run was taken away (e.g. marked aborted)."""
        return self._update_owned(run_id, owner, lambda r: r.update(heartbeat=time.time()))

    def finish(self, run_id: str, owner: ProcessIdentity, status: str, note: str = "", **fields) -> bool:
        """Record the outcome of an owned run (``success``, ``failed``, ``aborted`` or ``queued``)."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        now = time.time()
        return self._update_owned(run_id, owner, lambda r: _set(r, status, note, finished=now, heartbeat=now,
                                                                **fields))

    def set_job_ids(self, job_ids: Dict[str, str]) -> None:
        with self.transaction() as db:
            runs = db.table(RUNS_TABLE)
            for document in runs.search(Query().run_id.one_of(list(job_ids))):
                record = dict(document)
                _add_history(record, record["status"], f"submitted as Slurm job {job_ids[record['run_id']]}")
                record["job_id"] = job_ids[record["run_id"]]
                runs.update(record, doc_ids=[document.doc_id])

    def recover(self, by: str) -> List[dict]:
        """Mark ``running`` runs whose owner and process are gone as ``aborted``; return them."""
        recovered = []
        with self.transaction() as db:
            runs = db.table(RUNS_TABLE)
            now = time.time()
            for document in runs.search(Query().status == RUNNING):
                if run_is_alive(document, now):
                    continue
                record = dict(document)
                where = f"{record.get('host')} pid {record.get('pid') or (record.get('owner') or {}).get('pid')}"
                _set(record, ABORTED, f"process gone ({where}); found by {by}", finished=now,
                     error=f"the run's process ({where}) ended without reporting (killed manager or machine)")
                runs.update(record, doc_ids=[document.doc_id])
                recovered.append(record)
        return recovered

    def requeue(self, level: int, run_ids: Optional[Sequence[str]] = None, note: str = "",
                prepare: Optional[Callable[[str], None]] = None) -> Dict[str, List[str]]:
        """Queue again the runs of ``REQUEUE_LEVELS[level]`` (restricted to ``run_ids`` if given);
        ``prepare(run_dir)`` runs for each of them before the lock is released (nobody can claim
        them meanwhile). Returns ``{previous status: [run ids]}``."""
        requeued: Dict[str, List[str]] = {}
        with self.transaction() as db:
            runs = db.table(RUNS_TABLE)
            for document in requeue_candidates(runs.all(), level, run_ids):
                record = dict(document)
                status = record["status"]
                if prepare is not None:
                    prepare(self.run_dir(record["run_id"]))
                record.update(_runtime_fields())
                _set(record, QUEUED, note or f"requeued (level {level}, was {status})")
                runs.update(record, doc_ids=[document.doc_id])
                requeued.setdefault(status, []).append(record["run_id"])
        return requeued

    def delete(self) -> None:
        """Remove the database and its lock file."""
        for path in (self.path, self.lock_path):
            if os.path.exists(path):
                os.remove(path)


def requeue_candidates(records: Iterable[dict], level: int, run_ids: Optional[Sequence[str]] = None) -> List[dict]:
    """The records ``RunDatabase.requeue(level)`` would queue again. Live running runs never are."""
    if level not in REQUEUE_LEVELS:
        raise ValueError(f"requeue level {level} is not one of "
                         + "; ".join(f"{k}: {v}" for k, v in REQUEUE_LEVELS.items()))
    eligible = {ABORTED} | ({FAILED} if level >= 2 else set()) | ({SUCCESS} if level >= 4 else set())
    selected = None if run_ids is None else set(run_ids)
    now = time.time()
    chosen = []
    for record in records:
        if selected is not None and record["run_id"] not in selected:
            continue
        status = record.get("status")
        if status in eligible or (status == RUNNING and level >= 3 and not run_is_alive(record, now)):
            chosen.append(record)
    return chosen


def first_line(text: Optional[str]) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def read_runs(exp_dir: str) -> List[dict]:
    """Read-only view of an experiment's queue, in grid order, for reports and scripts.

    Each dict holds the record's fields (``run_id``, ``status``, ``args``, ``params``,
    ``created``/``started``/``finished``/``heartbeat`` epoch seconds, ``host``, ``pid``,
    ``device``, ``attempts``, ``error``, ...) plus ``run_dir`` (absolute path of the run folder),
    ``message`` (first line of ``error``) and ``alive`` (for ``running`` runs: whether the process
    is still there). Raises FileNotFoundError when the experiment has no database and
    DatabaseError when it is unreadable."""
    database = RunDatabase(exp_dir)
    now = time.time()
    view = []
    for record in database.records():
        record["run_dir"] = database.run_dir(record["run_id"])
        record["message"] = first_line(record.get("error"))
        record["alive"] = record.get("status") == RUNNING and run_is_alive(record, now)
        view.append(record)
    return view


__all__ = ["RunDatabase", "read_runs", "DatabaseError", "STATUSES", "REQUEUE_LEVELS",
           "QUEUED", "RUNNING", "SUCCESS", "FAILED", "ABORTED"]
