"""Rebuilding a queue whose ``.db.json`` or journal cannot be read (``dbutils.py --repair``).

Both files hold one record a line (``ovis.queue.storage``), so damage (binary garbage, a hand
edit, a bad disk block) is confined to some lines. ``salvage_lines`` keeps every line that still
parses and names each lost one (its line number and, where the line shows them, its document and
run id). The rebuilt queue is the intact records of ``.db.json`` with the intact journal entries
laid over them. A record that may be out of date (its newer entry was lost, or the lost line could
not be attributed) takes its status from its run folder (``reconcile``): a liveness file naming a
live process makes it ``running`` again (never launched twice), an ``outcome.txt`` its status
(a success is never run again). Runs whose record was lost altogether are re-added from the spec
with their folder's status (``ovis.queue.repair``, or ``manager.py``).
"""
import os
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Set, Tuple

import orjson

from ovis import records as run_records
from ovis.queue import liveness
from ovis.queue.process import run_is_alive
from ovis.queue.journal import JOURNAL_TABLE, Base, View, lay_over
from ovis.queue.storage import CorruptDatabase, Tables, backup_copy
from ovis.queue.transaction import ABORTED, FAILED, QUEUED, RUNNING, RUNS_TABLE, SUCCESS, set_status

DOC_ID = re.compile(rb'^\s*"(\d+)"\s*:')
RUN_ID = re.compile(rb'"run_id"\s*:\s*"([^"\\]+)"')


@dataclass
class LostLine:
    """A line of a database file that no longer parses."""
    number: int
    table: Optional[str]
    doc_id: Optional[str]
    run_id: Optional[str]

    def describe(self) -> str:
        what = ([f"run {self.run_id}"] if self.run_id else []) + \
            ([f"document {self.doc_id} of table '{self.table}'"] if self.doc_id and self.table else [])
        return f"line {self.number}: " + (", ".join(what) if what else "unreadable, its record unknown")


def _record(line: bytes) -> Optional[Tuple[str, dict]]:
    try:
        docs = orjson.loads(b"{" + line.strip().rstrip(b",") + b"}")
    except orjson.JSONDecodeError:
        return None
    if len(docs) != 1:
        return None
    ((doc_id, record),) = docs.items()
    return (doc_id, record) if isinstance(record, dict) else None


def _header(line: bytes) -> Optional[Tuple[str, bool]]:
    """``(table name, whether it is empty)`` of a table's opening line (``"runs": {``, ``"meta": {},``)."""
    stripped = line.strip().rstrip(b",")
    for ending, empty in ((b": {}", True), (b": {", False)):
        if stripped.endswith(ending):
            try:
                name = orjson.loads(stripped[:-len(ending)])
            except orjson.JSONDecodeError:
                return None
            return (name, empty) if isinstance(name, str) else None
    return None


def salvage_lines(text: bytes) -> Tuple[Tables, List[LostLine]]:
    """The tables of every intact line of a file in the one-record-a-line layout, and its lost lines."""
    tables: Tables = {}
    lost: List[LostLine] = []
    table: Optional[str] = None
    for number, line in enumerate(text.split(b"\n"), 1):
        stripped = line.strip()
        if stripped in (b"", b"{", b"}", b"},"):
            table = None if stripped in (b"}", b"},") else table
            continue
        header = _header(line) if not DOC_ID.match(line) else None
        if header is not None:
            tables.setdefault(header[0], {})
            table = None if header[1] else header[0]
            continue
        parsed = _record(line)
        where = table if table is not None else (RUNS_TABLE if parsed and "run_id" in parsed[1] else None)
        if parsed is None or where is None:
            doc_id, run_id = DOC_ID.match(line), RUN_ID.search(line)
            lost.append(LostLine(number, table, doc_id and doc_id.group(1).decode(),
                                 run_id and run_id.group(1).decode("utf-8", "replace")))
            continue
        tables.setdefault(where, {})[parsed[0]] = parsed[1]
    return tables, lost


def _live_record(exp_dir: str, record: dict) -> Optional[dict]:
    """``record`` as ``running`` for the owner and process of its liveness file, if they are alive."""
    state = liveness.read_liveness(exp_dir, record["run_id"])
    owner = (state or {}).get("owner")
    if not isinstance(owner, dict):
        return None
    running = dict(record, status=RUNNING, owner=owner, host=owner.get("host"), attempts=state.get("attempt"),
                   pid=state.get("pid"), pid_start=state.get("pid_start"), heartbeat=state.get("heartbeat"))
    return running if run_is_alive(running) else None


def reconcile(exp_dir: str, run_dir: str, record: dict, why: str) -> Tuple[dict, Optional[str]]:
    """``record`` brought in line with its run folder (see the module docstring), and what changed."""
    live = _live_record(exp_dir, record)
    if live is not None:
        if record.get("status") == RUNNING and record.get("owner") == live["owner"]:
            return record, None
        set_status(live, RUNNING, f"{why}; its liveness file names a live process")
        return live, f"running (its process {live.get('host')} pid {live.get('pid')} is alive)"
    outcome = run_records.read_outcome(run_dir)
    if outcome not in (SUCCESS, FAILED, ABORTED) or outcome == record.get("status"):
        return record, None
    if record.get("status") not in (QUEUED, RUNNING) and outcome != SUCCESS:
        return record, None  # a later end than the marker's (e.g. requeued and failed again)
    record = dict(record)
    set_status(record, outcome, f"{why}; status from its outcome.txt")
    return record, f"{outcome} (its outcome.txt)"


def reconcile_runs(exp_dir: str, run_dir, tables: Tables, doc_ids: Set[str], why: str) -> Dict[str, str]:
    """Reconcile the runs of ``doc_ids`` in ``tables`` (in place); ``{run id: what changed}``."""
    changed = {}
    runs = tables[RUNS_TABLE] = dict(tables.get(RUNS_TABLE, {}))  # the read cache's tables stay as read
    for doc_id in sorted(doc_ids & set(runs), key=int):
        record = runs[doc_id]
        if not isinstance(record.get("run_id"), str):
            continue
        runs[doc_id], change = reconcile(exp_dir, run_dir(record["run_id"]), record, why)
        if change:
            changed[record["run_id"]] = change
    return changed


def _read_or_salvage(cached, label: str, report: List[str]) -> Tuple[Optional[Tables], List[LostLine]]:
    """The tables of a database file (salvaged when it is unreadable), its lost lines, and a copy
    of it when damaged."""
    try:
        return cached.read(), []
    except CorruptDatabase as error:
        with open(cached.path, "rb") as f:
            tables, lost = salvage_lines(f.read())
        kept = sum(len(docs) for docs in tables.values())
        report.append(f"{label} {cached.path} ({error}; copy: {backup_copy(cached.path)}): kept {kept} intact "
                      f"entries, lost {len(lost)} line(s)" + "".join(f"\n  {line.describe()}" for line in lost))
        return tables, lost


def rebuild(store, run_dir, report: List[str]) -> bool:
    """Write ``.db.json`` again from the intact parts of ``.db.json`` and its journal (the caller
    holds the lock); False when both are readable. ``report`` gets what was kept and lost."""
    exp_dir = os.path.dirname(store.main.path)
    main, main_lost = _read_or_salvage(store.main, "the database", report)
    journal, journal_lost = _read_or_salvage(store.journal, "the journal", report) \
        if os.path.exists(store.journal.path) else (None, [])
    if not (main_lost or journal_lost) and (journal is None or JOURNAL_TABLE in journal):
        return False
    main = main or {}
    generation = Base(main).generation
    base = (journal or {}).get(JOURNAL_TABLE, {}).get("1", {}).get("base", generation)
    main_generation_lost = any(line.table == JOURNAL_TABLE for line in main_lost)
    if journal is not None and base != generation and not main_generation_lost:
        report.append(f"the journal extends generation {base}, not {generation}: left by an interrupted compaction, "
                      f"ignored (its changes are in {os.path.basename(store.main.path)})")
        journal, journal_lost = None, []
    tables = lay_over(main, journal or {})
    overlaid = set((journal or {}).get(RUNS_TABLE, {}))
    suspect = {line.doc_id for line in journal_lost if line.doc_id and line.table in (RUNS_TABLE, None)}
    if any(line.doc_id is None for line in journal_lost):  # unattributed: any record not in the journal
        suspect |= set(tables.get(RUNS_TABLE, {})) - overlaid
    changed = reconcile_runs(exp_dir, run_dir, tables, suspect - overlaid, "its journal entry was lost")
    if suspect:
        report.append(f"{len(suspect - overlaid)} record(s) may predate a lost journal entry; from their run "
                      f"folders: " + (", ".join(f"{run_id} -> {what}" for run_id, what in changed.items())
                                       or "no change"))
    known = {r.get("run_id") for r in tables.get(RUNS_TABLE, {}).values()}
    gone = sorted({line.run_id or f"document {line.doc_id}" for line in main_lost
                   if line.table in (RUNS_TABLE, None) and line.run_id not in known and line.doc_id not in overlaid})
    if gone:
        report.append(f"{len(gone)} run record(s) lost: {', '.join(gone)}; runs of the spec are re-added with "
                      f"their folder's status (here with the spec, or by manager.py)")
    view = View(Base(main), None, os.path.exists(store.journal.path))
    store.write(view, tables, None, {}, fold=True)
    return True
