"""Hand-made damage to a queue, found by ``dbutils.py --check`` and fixed by ``--repair``.

* a record without ``run_id``: its id is computed again from its ``args`` (the grid's own id,
  ``ovis.queue.spec.make_run_id``); without usable ``args`` it is removed (the database's
  ``.corrupt-`` copy is not involved: ``--repair`` says which records it dropped);
* a record without a ``status`` (or an unknown one) is never run nor requeued: it gets the
  status of its run folder's outcome marker, or ``queued`` when there is none (it then resumes
  from its checkpoint);
* a run folder without a record (a record removed by hand): re-added from the experiment's spec
  (recorded in the database's meta table) with the status of its outcome marker.
"""
import os
import shlex
from typing import Dict, List, Optional, Sequence

from ovis import records as run_records
from ovis.queue.database import QUEUED, STATUSES, RunDatabase
from ovis.queue.salvage import reconcile
from ovis.queue.transaction import add_history, runtime_fields, set_status
from ovis.queue.spec import GridPoint, SpecError, canonical_arguments, make_run_id

RUN_FOLDER_FILES = ("process.log", run_records.OUTCOME_FILE, run_records.LEGACY_OUTCOME_FILE, "config.json")


def _folder_status(run_dir: str) -> str:
    outcome = run_records.read_outcome(run_dir)
    return outcome if outcome in STATUSES else QUEUED


def _run_id_from_args(record: dict) -> Optional[str]:
    args = record.get("args")
    if not isinstance(args, str) or not args.strip():
        return None
    try:
        return make_run_id(canonical_arguments(shlex.split(args), "record"))
    except (SpecError, ValueError):
        return None


def find_problems(database: RunDatabase) -> Dict[str, list]:
    """``no_run_id`` (document ids), ``bad_status`` (run ids), ``orphan_folders`` (folder names)."""
    records = database.records()
    known = {r.get("run_id") for r in records}
    folders = sorted(name for name in os.listdir(database.exp_dir)
                     if not name.startswith(".") and name not in known
                     and os.path.isdir(os.path.join(database.exp_dir, name))
                     and any(os.path.exists(os.path.join(database.exp_dir, name, f)) for f in RUN_FOLDER_FILES))
    return dict(no_run_id=[str(r.get("index", "?")) for r in records if not isinstance(r.get("run_id"), str)],
                bad_status=[r["run_id"] for r in records
                            if isinstance(r.get("run_id"), str) and r.get("status") not in STATUSES],
                orphan_folders=folders)


def describe_problems(problems: Dict[str, list]) -> List[str]:
    lines = []
    if problems["no_run_id"]:
        lines.append(f"{len(problems['no_run_id'])} record(s) without run_id (grid index "
                     f"{', '.join(problems['no_run_id'][:5])}): they cannot run")
    if problems["bad_status"]:
        lines.append(f"{len(problems['bad_status'])} record(s) without a valid status, never run nor requeued: "
                     + ", ".join(problems["bad_status"][:5]))
    if problems["orphan_folders"]:
        lines.append(f"{len(problems['orphan_folders'])} run folder(s) without a record (removed by hand?): "
                     + ", ".join(problems["orphan_folders"][:5]))
    if lines:
        lines.append("'dbutils.py --repair' fixes them (after confirmation)")
    return lines


def repair(database: RunDatabase, points: Optional[Sequence[GridPoint]] = None) -> List[str]:
    """Fix what can be fixed, in one transaction; returns what was done, one line each."""
    done: List[str] = []
    orphans = find_problems(database)["orphan_folders"]
    by_id = {p.run_id: p for p in points or []}
    with database.transaction() as transaction:
        known = {r.get("run_id") for r in transaction.runs.values()}
        for doc_id, record in list(transaction.runs.items()):
            if isinstance(record.get("run_id"), str):
                continue
            run_id = _run_id_from_args(record)
            if run_id is None or run_id in known:
                transaction.remove(doc_id)
                done.append(f"removed record {doc_id} (no run_id" + (f"; its args give {run_id}, already in the "
                                                                      f"queue)" if run_id else ", no args)"))
                continue
            record = dict(record, run_id=run_id)
            add_history(record, record.get("status", QUEUED), "run_id restored from args by dbutils.py --repair")
            transaction.put(doc_id, record)
            known.add(run_id)
            done.append(f"restored the run_id of record {doc_id}: {run_id}")
        for doc_id, record in list(transaction.runs.items()):
            if record.get("status") in STATUSES:
                continue
            status = _folder_status(database.run_dir(record["run_id"]))
            record = dict(record)
            set_status(record, status, f"status {record.get('status')!r} repaired by dbutils.py --repair")
            transaction.put(doc_id, record)
            done.append(f"{record['run_id']}: status set to {status}")
        next_index = max((r.get("index", 0) for r in transaction.runs.values()), default=-1) + 1
        for name in orphans:
            if name in known:  # its record got its run_id back above
                continue
            if name not in by_id:
                done.append(f"{name}: folder without record, not in the spec's grid: not re-added (run manager.py "
                            f"with its spec to re-add it)")
                continue
            point = by_id[name]
            record = dict(run_id=name, index=next_index, args=point.args, params=dict(point.params), status=QUEUED,
                          created=None, attempts=0, history=[], stale_after=None, **runtime_fields())
            record = reconcile(database.exp_dir, database.run_dir(name), record, "re-added by dbutils.py --repair "
                               "(the record had been removed or lost; earlier history lost)")[0]
            status = record["status"]
            if not record["history"]:
                add_history(record, status, "re-added by dbutils.py --repair (the record had been removed or lost; "
                                            "earlier history lost); no outcome in its folder")
            transaction.insert(record)
            next_index += 1
            done.append(f"{name}: re-added as {status}")
    return done
