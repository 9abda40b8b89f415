"""``TinyDB(path, storage=QueueStorage)``: a queue's ``.db.json`` opened with TinyDB, as the queue
sees it (``ovis.queue.journal``: the journal of a large queue laid over it).

    from tinydb import TinyDB
    from ovis.queue import QueueStorage
    with TinyDB("runs/sigmoid-belief-network/.db.json", storage=QueueStorage) as db:
        failed = db.table("runs").search(Query().status == "failed")

A write through it (``db.table("runs").update(...)``) is one queue transaction, under the queue's
lock: it rewrites ``.db.json`` with every table and folds the journal in. Plain ``TinyDB(path)``
reads ``.db.json`` alone, which lacks the journal's changes while a large queue has one
(``python dbutils.py --exp NAME --compact`` folds it in; the local manager does when it ends);
edit with it only then, with no manager running (the journal's records would win over the edit).
"""
import os

from tinydb.storages import Storage

from ovis.queue.database import DB_FILE, RunDatabase


class QueueStorage(Storage):
    def __init__(self, path: str, lock_timeout: float = 120.0):
        if os.path.basename(path) != DB_FILE:
            raise ValueError(f"QueueStorage opens a queue's {DB_FILE} (e.g. runs/NAME/{DB_FILE}), got {path}")
        self.database = RunDatabase(os.path.dirname(path) or ".", lock_timeout=lock_timeout)

    def read(self):
        tables = self.database.tables()
        return None if tables is None else {name: dict(docs) for name, docs in tables.items()}

    def write(self, data) -> None:
        tables = {name: {str(doc_id): dict(record) for doc_id, record in docs.items()} for name, docs in data.items()}
        with self.database.transaction() as transaction:
            transaction.replace_all(tables)
