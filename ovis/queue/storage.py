"""A queue database file (``.db.json`` and the journal of ``ovis.queue.journal``): a TinyDB JSON
document, one record a line, written atomically.

The file is what ``tinydb.TinyDB(path)`` reads with its default ``JSONStorage``::

    {
    "meta": {
    "1": {"created": ..., "exp": ...}
    },
    "runs": {
    "1": {"run_id": ..., "status": "queued", ...},
    "2": {...}
    }
    }

Why this layout and not TinyDB's own writer (``benchmarks/queue_scale.py``: 20,000 records of
the sigmoid-belief-network grid, 1.4 KB each): re-parsing and re-serialising the whole file
with ``json`` on every claim took 0.7-1.8 s to parse and 7 s to write (``indent``), and TinyDB's
``Table.update`` converts every document id on every call (O(records) per update). Here

* a file unchanged since this process last read or wrote it (same inode, size, mtime, ctime)
  is not read at all; a changed one is split into lines and only the lines that differ from
  the ones this process knows are parsed (C-level comparisons, ``orjson``);
* a write encodes only the records its caller names as new or replaced and reuses the lines
  of all others (removed records are left out);
* any other valid JSON of TinyDB tables (TinyDB's compact file, a hand-edited one, the older
  indented layout) is read whole, and the next write lays it out again.

Records are replaced, never mutated: a transaction works on shallow copies of the tables.
Writes go through ``ovis.files.atomic_open`` (temporary file, fsync, rename, folder fsync): the
file is the old or the new one, never a torn one.
"""
import errno
import itertools
import operator
import os
import shutil
import threading
import time
from typing import Dict, List, Optional, Set, Tuple

import orjson

from ovis import exit_codes
from ovis.files import atomic_open

Tables = Dict[str, Dict[str, dict]]


class DatabaseError(RuntimeError):
    """The queue database cannot be used (corrupted file, no permission, full disk, lock held
    too long); the message names the file, the problem and what to do. ``exit_code``: the
    scripts' exit code for it (``ovis.exit_codes``)."""
    exit_code = exit_codes.FAILED


def nearest_existing_folder(path: str) -> str:
    """``path``'s deepest ancestor (or itself) that exists: the folder a failed write hit."""
    folder = os.path.abspath(path)
    while not os.path.isdir(folder) and os.path.dirname(folder) != folder:
        folder = os.path.dirname(folder)
    return folder


def os_error_advice(error: OSError, path: str, action: str) -> DatabaseError:
    """One message for an OSError met while ``action`` (e.g. 'write') on ``path``."""
    folder = os.path.dirname(path)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        todo = f"the disk (or quota) of {folder} is full: free some space and run the command again"
    elif error.errno in exit_codes.PERMISSION_ERRNOS:
        blocking = nearest_existing_folder(folder)
        what = f"{path} or its folder is" if blocking == os.path.abspath(folder) else f"{blocking} is"
        todo = (f"{what} read-only for this user: make {blocking} and the files in it writable (or run as their "
                f"owner, or choose another --root), then run the command again")
    else:
        todo = "fix the cause above and run the command again"
    database_error = DatabaseError(f"could not {action} the queue database {path}: {error.strerror or error} "
                                   f"[{errno.errorcode.get(error.errno, error.errno)}]; {todo}. Nothing was changed.")
    database_error.exit_code = exit_codes.for_os_error(error)
    return database_error


def backup_copy(path: str) -> str:
    """Copy the unreadable file aside, once per distinct content."""
    folder, name = os.path.split(path)
    with open(path, "rb") as f:
        content = f.read()
    for existing in sorted(os.listdir(folder or ".")):
        if existing.startswith(name + ".corrupt-"):
            with open(os.path.join(folder, existing), "rb") as f:
                if f.read() == content:
                    return os.path.join(folder, existing)
    backup = f"{path}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.copy2(path, backup)
    return backup


class CorruptDatabase(ValueError):
    """The file ``path`` exists but is not a JSON object of TinyDB tables; the message says what is
    wrong."""

    def __init__(self, problem: str, path: Optional[str] = None):
        super().__init__(problem)
        self.path = path


def _file_signature(path: str) -> Optional[Tuple[int, int, int, int]]:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


def _check_tables(data: object) -> Tables:
    if not isinstance(data, dict) or not all(isinstance(t, dict) for t in data.values()):
        raise CorruptDatabase("it does not hold TinyDB tables (an object of objects)")
    return data


def _line_and_column(text: bytes, position: int) -> Tuple[int, int]:
    """1-based line and column (in bytes) of ``position`` in ``text``."""
    return text.count(b"\n", 0, position) + 1, position - text.rfind(b"\n", 0, position)


def _record_line(doc_id: str, record: dict) -> bytes:
    return orjson.dumps(str(doc_id)) + b": " + orjson.dumps(record) + b","


def _parse_records(lines: List[bytes]) -> Dict[str, dict]:
    """``{doc id: record}`` of record lines (each ``"id": {...}`` with or without its comma)."""
    body = b"\n".join(lines).rstrip(b",")
    docs = orjson.loads(b"{" + body + b"}")
    if not all(isinstance(record, dict) for record in docs.values()):
        raise ValueError("a record is not an object")
    return docs


def _split_layout(text: bytes) -> Optional[Dict[str, List[bytes]]]:
    """``{table: its record lines}`` when ``text`` has this module's layout, else None."""
    lines = text.rstrip(b"\n").split(b"\n")
    if len(lines) < 2 or lines[0] != b"{" or lines[-1] != b"}":
        return None
    layout: Dict[str, List[bytes]] = {}
    i, end = 1, len(lines) - 1
    while i < end:
        header = lines[i]
        if header.endswith((b": {}", b": {},")):
            layout[orjson.loads(header[:header.rindex(b": {")])] = []
            i += 1
            continue
        if not header.endswith(b": {"):
            return None
        closes = [c for c in (_find(lines, b"}", i + 1, end), _find(lines, b"},", i + 1, end)) if c is not None]
        if not closes:
            return None
        close = min(closes)
        layout[orjson.loads(header[:-3])] = lines[i + 1:close]
        i = close + 1
    return layout


def _find(lines: List[bytes], line: bytes, start: int, end: int) -> Optional[int]:
    try:
        return lines.index(line, start, end)
    except ValueError:
        return None


class CachedFile:
    """The database file as this process last saw it: its tables and, per table, the document
    ids and record lines in file order. Used under its caller's lock (and its own)."""

    def __init__(self, path: str):
        self.path = path
        self.lock = threading.RLock()
        self._signature = None
        self._tables: Optional[Tables] = None
        self._lines: Dict[str, Tuple[Dict[str, int], List[bytes]]] = {}  # table -> (position of id, lines)

    def read(self) -> Optional[Tables]:
        """The tables (shared: replace records, never mutate them), or None without a file."""
        with self.lock:
            signature = _file_signature(self.path)
            if signature is None:
                self._signature, self._tables, self._lines = None, None, {}
                return None
            if signature != self._signature:
                with open(self.path, "rb") as f:
                    text = f.read()
                try:
                    self._tables = self._decode(text)
                except CorruptDatabase as error:
                    error.path = self.path
                    raise
                self._signature = signature
            return self._tables

    def _decode(self, text: bytes) -> Tables:
        try:
            layout = _split_layout(text)
            if layout is not None:
                return {name: self._decode_table(name, lines) for name, lines in layout.items()}
        except (ValueError, TypeError):
            pass
        self._lines = {}
        try:
            return _check_tables(orjson.loads(text))
        except orjson.JSONDecodeError as error:
            line, column, problem = error.lineno, error.colno, error.msg
            try:
                text.decode("utf-8")
            except UnicodeDecodeError as bad:  # orjson places invalid UTF-8 at line 1, column 1
                line, column = _line_and_column(text, bad.start)
                problem = f"byte 0x{text[bad.start]:02x} is not UTF-8"
            raise CorruptDatabase(f"it is not valid JSON (line {line}, column {column}: {problem})"
                                  + (" - binary data?" if b"\0" in text or "UTF-8" in problem else "")) from None

    def _decode_table(self, name: str, lines: List[bytes]) -> Dict[str, dict]:
        known = self._lines.get(name)
        old = (self._tables or {}).get(name)
        docs = None
        if known is not None and old is not None and len(known[1]) == len(lines):
            docs = dict(old)
            ids = list(old)
            for i in itertools.compress(range(len(lines)), map(operator.ne, lines, known[1])):
                changed = _parse_records([lines[i]])
                if list(changed) != [ids[i]]:  # not the same document at this position
                    docs = None
                    break
                docs.update(changed)
        if docs is None:
            docs = _parse_records(lines) if lines else {}
        self._lines[name] = ({doc_id: i for i, doc_id in enumerate(docs)}, lines)
        return docs

    @property
    def size(self) -> int:
        """Bytes of the file as last read or written (0 without a file)."""
        return self._signature[1] if self._signature else 0

    def write(self, tables: Tables, dirty: Optional[Dict[str, Set[str]]] = None) -> None:
        """Write ``tables`` atomically. ``dirty``: per table, the document ids whose record is new
        or replaced since this cache last read or wrote the file; the lines of all other records
        are reused. None re-encodes everything."""
        with self.lock:
            parts, lines_of = [b"{"], {}
            names = sorted(tables)
            for t, name in enumerate(names):
                lines = self._encode_table(name, tables[name], None if dirty is None else dirty.get(name, set()))
                lines_of[name] = ({doc_id: i for i, doc_id in enumerate(tables[name])}, lines)
                closing = b"}" if t == len(names) - 1 else b"},"
                parts += ([orjson.dumps(name) + b": {"] + lines + [closing]) if lines else \
                    [orjson.dumps(name) + b": {" + closing]
            parts.append(b"}\n")
            with atomic_open(self.path, "wb") as f:
                f.write(b"\n".join(parts))
            self._tables, self._lines, self._signature = tables, lines_of, _file_signature(self.path)

    def _encode_table(self, name: str, docs: Dict[str, dict], dirty: Optional[Set[str]]) -> List[bytes]:
        """One line per record, each ending with a comma but the last."""
        positions, known = self._lines.get(name, ({}, [])) if dirty is not None else ({}, [])
        lines = []
        for doc_id, record in docs.items():
            i = positions.get(doc_id)
            if i is None or doc_id in dirty:
                lines.append(_record_line(doc_id, record))
            else:
                lines.append(known[i] if known[i].endswith(b",") else known[i] + b",")
        if lines:
            lines[-1] = lines[-1][:-1]
        return lines
