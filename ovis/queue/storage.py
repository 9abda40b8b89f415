"""The queue database file: a TinyDB JSON document, one record a line, written atomically.

The file is what ``tinydb.TinyDB(path)`` reads with its default ``JSONStorage`` (users open it
that way; ``LineJSONStorage`` is the same format through TinyDB's ``Storage`` interface)::

    {
    "meta": {
    "1": {"created": ..., "exp": ...}
    },
    "runs": {
    "1": {"run_id": ..., "status": "queued", ...},
    "2": {...}
    }
    }

Why this layout and not TinyDB's own writer (``benchmarks/queue_scale.py``, 20,000 records of
the sigmoid-belief-network grid, 2 KB each): re-parsing and re-serialising the whole file on
every claim took 0.7-1.8 s to parse and 7 s to write with ``json`` + ``indent``, and TinyDB's
``Table.update`` converts every document id on every call (O(records) per update). Here

* records are encoded with ``orjson`` (one line each), and a line whose bytes did not change
  since the last read or write is never parsed or encoded again (a cache keyed by the line's
  bytes and by the record object's identity: records are replaced, never mutated);
* a file unchanged since this process last read or wrote it (same inode, size, mtime, ctime)
  is not read at all;
* any other valid JSON of TinyDB tables (TinyDB's compact file, a hand-edited one, the older
  indented layout) is read whole, and the next write lays it out again.

Writes go through ``ovis.files.atomic_open`` (temporary file, fsync, rename, folder fsync): the
file is the old or the new database, never a torn one.
"""
import os
import threading
from typing import Dict, Optional, Tuple

import orjson
from tinydb.storages import Storage

from ovis.files import atomic_open

Tables = Dict[str, Dict[str, dict]]


class CorruptDatabase(ValueError):
    """The file exists but is not a JSON object of TinyDB tables; the message says what is wrong."""


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


class RecordCodec:
    """Encodes and decodes the database with a per-record cache; one instance per file and
    process, used under its caller's lock. Records are never mutated, only replaced, so a
    record object still maps to the line it was read from or written as."""

    def __init__(self):
        self._by_line: Dict[bytes, Tuple[str, dict]] = {}          # line -> (doc id, record)
        self._by_record: Dict[Tuple[str, int], Tuple[dict, bytes]] = {}  # (doc id, id(record)) -> line

    def _remember(self, by_line: dict, by_record: dict, line: bytes, doc_id: str, record: dict) -> None:
        by_line[line] = (doc_id, record)
        by_record[(doc_id, id(record))] = (record, line)

    def encode(self, tables: Tables) -> bytes:
        by_line, by_record = {}, {}
        parts = [b"{"]
        names = sorted(tables)
        for t, name in enumerate(names):
            closing = b"}" if t == len(names) - 1 else b"},"
            docs = tables[name]
            if not docs:
                parts.append(orjson.dumps(name) + b": {" + closing)
                continue
            lines = []
            for doc_id, record in docs.items():
                doc_id = str(doc_id)
                cached = self._by_record.get((doc_id, id(record)))
                line = cached[1] if cached is not None and cached[0] is record else (
                    orjson.dumps(doc_id) + b": " + orjson.dumps(record))
                self._remember(by_line, by_record, line, doc_id, record)
                lines.append(line)
            parts += [orjson.dumps(name) + b": {", b",\n".join(lines), closing]
        parts.append(b"}\n")
        self._by_line, self._by_record = by_line, by_record
        return b"\n".join(parts)

    def decode(self, text: bytes) -> Tables:
        try:
            return self._decode_lines(text)
        except (ValueError, IndexError, TypeError, KeyError):
            pass
        try:
            data = orjson.loads(text)
        except orjson.JSONDecodeError as error:
            raise CorruptDatabase(f"it is not valid JSON (line {error.lineno}, column {error.colno}: {error.msg})"
                                  + (" - binary data?" if b"\0" in text or "UTF-8" in error.msg else "")) from None
        return _check_tables(data)

    def _decode_lines(self, text: bytes) -> Tables:
        lines = text.rstrip(b"\n").split(b"\n")
        if lines[0] != b"{" or lines[-1] != b"}":
            raise ValueError("not the line layout")
        by_line, by_record = {}, {}
        tables: Tables = {}
        current: Optional[Dict[str, dict]] = None
        for line in lines[1:-1]:
            line = line.rstrip(b",")
            if line.endswith(b": {") or line.endswith(b": {}"):
                current = tables[orjson.loads(line[:line.rindex(b": {")])] = {}
            elif line == b"}":
                current = None
            else:
                entry = self._by_line.get(line)
                if entry is None:
                    split = line.index(b": ")
                    entry = (orjson.loads(line[:split]), orjson.loads(line[split + 2:]))
                    if not isinstance(entry[0], str) or not isinstance(entry[1], dict):
                        raise ValueError("not a record line")
                current[entry[0]] = entry[1]
                self._remember(by_line, by_record, line, *entry)
        self._by_line, self._by_record = by_line, by_record
        return tables


class CachedFile:
    """The database file of one process: read (only when it changed) and written whole."""

    def __init__(self, path: str):
        self.path = path
        self.codec = RecordCodec()
        self._signature = None
        self._tables: Optional[Tables] = None
        self.lock = threading.RLock()

    def read(self) -> Optional[Tables]:
        """The tables (shared: replace records, never mutate them), or None without a file."""
        with self.lock:
            signature = _file_signature(self.path)
            if signature is None:
                self._signature, self._tables = None, None
                return None
            if signature != self._signature:
                with open(self.path, "rb") as f:
                    text = f.read()
                self._tables = self.codec.decode(text)
                self._signature = signature
            return self._tables

    def write(self, tables: Tables) -> None:
        with self.lock:
            text = self.codec.encode(tables)
            with atomic_open(self.path, "wb") as f:
                f.write(text)
            self._tables, self._signature = tables, _file_signature(self.path)


class LineJSONStorage(Storage):
    """TinyDB ``Storage`` of the queue's file layout, for ``TinyDB(path, storage=LineJSONStorage)``."""

    def __init__(self, path: str):
        self.file = CachedFile(path)

    def read(self) -> Optional[dict]:
        tables = self.file.read()
        return None if tables is None else {name: dict(docs) for name, docs in tables.items()}

    def write(self, data: dict) -> None:
        self.file.write({name: {str(k): dict(v) for k, v in docs.items()} for name, docs in data.items()})
