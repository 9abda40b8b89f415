"""The queue database as two TinyDB files: ``.db.json`` (every run) and, for large queues, a small
``.db.journal.json`` of the records changed since ``.db.json`` was last written.

Why (``benchmarks/queue_scale.py``, 20,000 runs of 1.4 KB, a 28.8 MB file): rewriting
the whole file at every claim or finish cost 50-70 ms (write 25, fsync 20, rename of a 28.8 MB
file 9), and reading it again after another process wrote 60-80 ms (splitting and comparing
28.8 MB of lines), so claims took 83 ms alone and 136 ms after another process wrote (now 3-4 ms and
4-6 ms: ``benchmarks/results.md``). With the journal a transaction writes only the journal (every
record changed since the last compaction) and a reader re-reads only it. When the journal would
pass ``sqrt(2 n)`` of the ``n`` records (200 at 20,000, about 290 KB), the transaction instead
rewrites ``.db.json`` with everything (a compaction) and removes the journal. That bound minimises
the records written per transaction: a journal growing to ``J`` records costs ``J / 2`` on
average, a compaction every ``J`` transactions ``n / J``, and ``J / 2 + n / J`` is smallest at
``J = sqrt(2 n)``. Sharding the runs table instead would split what a user opens into many files and
still need a journal for transactions over several shards.

Layout. ``.db.json`` is the file ``TinyDB(path)`` opens, as before; once a journal has existed it
also has a table ``journal`` (``{"1": {"generation": g, "file": ".db.journal.json"}}``). The
journal is a TinyDB file of the same layout with the table ``journal`` (``{"1": {"base": g}}``),
the changed records under their own table name (``runs``, ``meta``) and the removed document ids
under ``<table>.removed``. Readers lay the journal over ``.db.json`` when its ``base`` equals the
``generation`` of ``.db.json`` and ignore it otherwise.

All or nothing, whatever is killed when. A transaction is one atomic write
(``ovis.files.atomic_open``) of the journal or of ``.db.json``. A compaction writes ``.db.json``
with ``generation + 1`` and then removes the journal: killed in between, the journal left behind
names the old generation and is ignored (and replaced or removed by the next writer); nothing is
applied twice or lost. Lock-free readers read the journal first, then ``.db.json``: whatever
happens in between, they see the state of one moment (the journal's, or the compaction's).

Small queues (``.db.json`` under ``JOURNAL_FROM_BYTES``, about 700 runs) never get a journal:
their ``.db.json`` is exactly the single file of earlier versions, and older databases are read
as they are (generation 0). How users read it: ``ovis.queue.read_runs``; or
``TinyDB(path, storage=ovis.queue.QueueStorage)`` (journal applied; writes fold it in, under the
lock); or plain ``TinyDB(path)`` after ``dbutils.py --compact`` (the local manager also compacts
when it ends).
"""
import contextlib
import math
import os
import threading
from typing import Callable, Dict, Optional, Set

from ovis.queue.storage import CachedFile, CorruptDatabase, Tables

JOURNAL_TABLE = "journal"
REMOVED = ".removed"           # ``<table>.removed``: document ids removed from <table>
JOURNAL_FROM_BYTES = 1_000_000  # smaller databases are rewritten whole at every transaction

DocIds = Dict[str, Set[str]]  # table -> document ids


def _generation(main: Tables) -> int:
    entry = (main.get(JOURNAL_TABLE) or {}).get("1")
    value = entry.get("generation", 0) if isinstance(entry, dict) else 0
    return value if isinstance(value, int) else 0


def _records(tables: Tables) -> int:
    return sum(len(docs) for name, docs in tables.items() if name != JOURNAL_TABLE)


def _table_of(name: str) -> str:
    """The table a journal entry changes: ``runs`` for ``runs`` and ``runs.removed``."""
    return name[:-len(REMOVED)] if name.endswith(REMOVED) else name


def lay_over(main: Tables, journal: Tables) -> Tables:
    """``main``'s tables with the journal's records replacing or adding theirs and its removals applied."""
    tables = {name: docs for name, docs in main.items() if name != JOURNAL_TABLE}
    names = {_table_of(name) for name in journal} - {JOURNAL_TABLE}
    for name in names:
        docs = dict(tables.get(name, {}))
        docs.update(journal.get(name, {}))
        for doc_id in journal.get(name + REMOVED, {}):
            docs.pop(doc_id, None)
        tables[name] = docs
    return tables


class Base:
    """One version of ``.db.json`` and what is derived from it (computed once per version)."""

    def __init__(self, tables: Tables):
        self.tables = tables
        self.generation = _generation(tables)
        self._memo: Dict[str, object] = {}

    def memo(self, key: str, compute: Callable[[Tables], object]) -> object:
        """``compute(tables)``, computed once for this version (do not modify the result)."""
        if key not in self._memo:
            self._memo[key] = compute(self.tables)
        return self._memo[key]


class View:
    """The database as one read saw it: ``tables`` (shared: replace records, never mutate them)
    are ``base``'s with ``journal`` laid over; ``overlaid`` are the document ids, per table,
    whose record is not ``base``'s."""

    def __init__(self, base: Base, journal: Optional[Tables], journal_exists: bool):
        self.base, self.journal, self.journal_exists = base, journal, journal_exists
        self.tables = lay_over(base.tables, journal) if journal else \
            {name: docs for name, docs in base.tables.items() if name != JOURNAL_TABLE}
        self.overlaid: DocIds = {}
        for name, docs in (journal or {}).items():
            if name != JOURNAL_TABLE:
                self.overlaid.setdefault(_table_of(name), set()).update(docs)


class JournaledStore:
    """``.db.json`` and its journal as this process last saw them. Writers hold the database
    lock; readers need none."""

    def __init__(self, path: str, journal_path: str, journal_from_bytes: int = JOURNAL_FROM_BYTES):
        self.main, self.journal = CachedFile(path), CachedFile(journal_path)
        self.journal_from_bytes = journal_from_bytes
        self.lock = threading.RLock()
        self._view: Optional[View] = None
        self._journal_read: Optional[Tables] = None

    def read(self) -> Optional[View]:
        """The current view, or None without ``.db.json``. Raises CorruptDatabase (with ``path``)."""
        with self.lock:
            journal = self.journal.read()  # first: see "Lock-free readers" above
            main = self.main.read()
            if main is None:
                return None
            view = self._view
            if view is None or view.base.tables is not main or self._journal_read is not journal:
                base = view.base if view is not None and view.base.tables is main else Base(main)
                if journal is not None and not isinstance((journal.get(JOURNAL_TABLE) or {}).get("1"), dict):
                    raise CorruptDatabase(f"it has no '{JOURNAL_TABLE}' table naming the generation of "
                                          f"{os.path.basename(self.main.path)} it extends", self.journal.path)
                valid = journal is not None and journal[JOURNAL_TABLE]["1"].get("base") == base.generation
                self._view, self._journal_read = View(base, journal if valid else None, journal is not None), journal
            return self._view

    def empty_view(self) -> View:
        """The view of a queue without ``.db.json`` (a journal left there is stale: removed at the first write)."""
        return View(Base({}), None, os.path.exists(self.journal.path))

    def write(self, view: View, tables: Tables, put: Optional[DocIds], removed: DocIds, fold: bool = False) -> None:
        """Commit ``tables``, built on ``view`` (read under the lock) by replacing or adding the
        records ``put`` (None: any record may have changed) and removing ``removed``: into the
        journal while it stays small, else (or when ``fold``) by rewriting ``.db.json`` with
        everything and removing the journal."""
        with self.lock:
            if put is not None and not fold and self.main.size >= self.journal_from_bytes:
                journal = _journal_after(view, tables, put, removed)
                if _records(journal) <= math.sqrt(2 * _records(view.base.tables)):
                    self.journal.write(journal, put if view.journal is not None else None)
                    return
            out = dict(tables)
            if view.journal_exists or JOURNAL_TABLE in view.base.tables:
                out[JOURNAL_TABLE] = {"1": {"generation": view.base.generation + int(view.journal_exists),
                                            "file": os.path.basename(self.journal.path)}}
            dirty = None
            if put is not None:
                dirty = {name: view.overlaid.get(name, set()) | put.get(name, set()) for name in out}
                dirty[JOURNAL_TABLE] = {"1"}
            self.main.write(out, dirty)
            if view.journal_exists:  # a journal left here by a kill names the old generation: ignored
                with contextlib.suppress(OSError):
                    os.remove(self.journal.path)


def _journal_after(view: View, tables: Tables, put: DocIds, removed: DocIds) -> Tables:
    """The journal with this transaction's changes added to the current one's."""
    old = view.journal or {}
    journal = {name: docs for name, docs in old.items() if name != JOURNAL_TABLE}
    for name in set(put) | set(removed):
        docs, gone = dict(old.get(name, {})), dict(old.get(name + REMOVED, {}))
        for doc_id in put.get(name, ()):
            docs[doc_id] = tables[name][doc_id]
            gone.pop(doc_id, None)
        for doc_id in removed.get(name, ()):
            docs.pop(doc_id, None)
            gone[doc_id] = {}
        journal[name], journal[name + REMOVED] = docs, gone
    journal = {name: docs for name, docs in journal.items() if docs}
    journal[JOURNAL_TABLE] = {"1": {"base": view.base.generation}}
    return journal
