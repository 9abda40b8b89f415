"""The journal of large queues (``ovis.queue.journal``): what each transaction writes, compaction,
kills at any moment, stale journals, old databases and what users open with TinyDB."""
import errno
import json
import os
import random
import subprocess
import sys

import pytest
from tinydb import Query, TinyDB

from ovis.queue import QueueStorage
from ovis.queue.database import ABORTED, FAILED, QUEUED, RUNNING, SUCCESS, DatabaseError, RunDatabase
from ovis.queue.view import read_runs
from ovis.queue.journal import JOURNAL_FROM_BYTES, JOURNAL_TABLE
from ovis.queue.process import ProcessIdentity
from ovis.queue.spec import parse_spec
from ovis.queue.transaction import claim_order

from .helpers import ROOT, run_dbutils, run_manager, write_spec

OWNER = ProcessIdentity.current()


def grid(n: int):
    return parse_spec({"args": ["--x 1"], "parameters": {"seed": list(range(n))}}, "t", "/t.json").grid()


def journaled(exp_dir: str, n: int) -> RunDatabase:
    """``n`` queued runs in a database that journals at any size."""
    database = RunDatabase(exp_dir, journal_from_bytes=0)
    database.add_runs(grid(n), meta={"exp": "t"})
    return database


def statuses(exp_dir: str) -> dict:
    return {r["run_id"]: r["status"] for r in read_runs(exp_dir)}


def test_small_changes_go_to_the_journal_until_it_is_folded_in(tmp_path):
    database = journaled(str(tmp_path / "exp"), 50)  # journal of at most sqrt(2 * 51) = 10 records
    main = open(database.path, "rb").read()
    claimed = [database.claim(OWNER, "cpu", 600.0)["run_id"] for _ in range(10)]
    assert open(database.path, "rb").read() == main  # ten claims: .db.json untouched
    with TinyDB(database.journal_path) as journal:  # the journal is a TinyDB file of the changed records
        assert sorted(r["run_id"] for r in journal.table("runs").all()) == sorted(claimed)
        assert journal.table(JOURNAL_TABLE).get(doc_id=1) == {"base": 0}
    assert [r["run_id"] for r in read_runs(database.exp_dir) if r["status"] == RUNNING] == claimed
    assert RunDatabase(database.exp_dir).records() == database.records()  # another process sees the same
    claimed.append(database.claim(OWNER, "cpu", 600.0)["run_id"])  # the 11th change: compaction
    assert not os.path.exists(database.journal_path)
    with TinyDB(database.path) as db:
        assert sorted(r["run_id"] for r in db.table("runs").search(Query().status == RUNNING)) == sorted(claimed)
        assert db.table(JOURNAL_TABLE).get(doc_id=1)["generation"] == 1
    assert [r["run_id"] for r in read_runs(database.exp_dir) if r["status"] == RUNNING] == claimed


def test_claims_take_runs_in_the_order_of_a_full_scan(tmp_path):
    """Random claims, finishes and requeues: ``next_queued`` (base order + changed records) picks
    what sorting every queued record would pick."""
    database = journaled(str(tmp_path / "exp"), 120)
    rng = random.Random(3)
    for step in range(150):
        with database.transaction() as transaction:
            queued = [(claim_order(d, r), d) for d, r in transaction.runs.items() if r["status"] == QUEUED]
            found = transaction.next_queued()
            assert (found[0] if found else None) == (min(queued)[1] if queued else None), step
        action = rng.random()
        running = [r["run_id"] for r in database.records() if r["status"] == RUNNING]
        if action < 0.5:
            database.claim(OWNER, "cpu", 600.0)
        elif action < 0.8 and running:
            database.finish(rng.choice(running), OWNER, rng.choice([SUCCESS, ABORTED]))
        else:
            database.requeue(rng.choice([1, 4]))


def test_a_compaction_killed_before_removing_the_journal_loses_and_repeats_nothing(tmp_path, monkeypatch):
    database = journaled(str(tmp_path / "exp"), 50)
    first = database.claim(OWNER, "cpu", 600.0)["run_id"]  # in the journal: running
    monkeypatch.setattr("ovis.queue.journal.os.remove", lambda path: None)  # killed right after the rewrite
    database.set_job_ids({r["run_id"]: f"7_{i}" for i, r in enumerate(database.records())})  # compaction
    monkeypatch.undo()
    with TinyDB(database.journal_path) as journal:  # left behind, holding first without its job id
        assert journal.table(JOURNAL_TABLE).get(doc_id=1) == {"base": 0}
        assert [(r["run_id"], r["job_id"]) for r in journal.table("runs").all()] == [(first, None)]
    fresh = RunDatabase(database.exp_dir, journal_from_bytes=0)
    assert [r["job_id"] for r in fresh.records()] == [f"7_{i}" for i in range(50)]  # the old journal is ignored
    assert statuses(database.exp_dir)[first] == RUNNING
    second = fresh.claim(OWNER, "cpu", 600.0)  # the next writer replaces the stale journal
    assert second["run_id"] == fresh.records()[1]["run_id"] and second["attempts"] == 1
    with TinyDB(fresh.journal_path) as journal:
        assert journal.table(JOURNAL_TABLE).get(doc_id=1) == {"base": 1} and len(journal.table("runs")) == 1
    assert fresh.compact() and not os.path.exists(fresh.journal_path) and not fresh.compact()
    assert [r["status"] for r in read_runs(database.exp_dir)][:3] == [RUNNING, RUNNING, QUEUED]


WRITER = """
import sys
from ovis.queue.database import FAILED, SUCCESS, RunDatabase
from ovis.queue.process import ProcessIdentity
database = RunDatabase(sys.argv[1], journal_from_bytes=0)
owner = ProcessIdentity.current()
database.recover(by="the next writer")  # the run its killed predecessor held: aborted
print("start", flush=True)
while True:
    record = database.claim(owner, "cpu", 600.0)
    if record is None:
        print("requeueing", flush=True)
        database.requeue(4)
        continue
    print("claimed", record["run_id"], record["attempts"], flush=True)
    database.finish(record["run_id"], owner, SUCCESS if record["attempts"] % 2 else FAILED)
    print("finished", record["run_id"], record["attempts"], flush=True)
"""


def test_killed_writers_of_a_journaled_queue_lose_nothing_committed(tmp_path):
    """SIGKILL a writer that claims, finishes, journals and compacts, at many moments: every
    change it reported done is in the database, nothing is torn, no temporary file stays."""
    database = journaled(str(tmp_path / "exp"), 60)
    env = dict(os.environ, PYTHONPATH=ROOT)
    checked = 0
    for delay in (0.3, 0.45, 0.6, 0.75, 0.9, 1.05):
        writer = subprocess.Popen([sys.executable, "-c", WRITER, database.exp_dir], stdout=subprocess.PIPE, env=env,
                                  text=True)
        assert writer.stdout.readline().strip() == "start"
        try:
            writer.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            writer.kill()
        writer.wait()
        done = [line.split() for line in writer.stdout.read().split("\n")[:-1]]  # whole lines only
        records = {r["run_id"]: r for r in RunDatabase(database.exp_dir).records()}
        assert len(records) == 60
        last = {}  # run id -> the writer's last committed word on it since its last requeue
        for line in done:
            last = {} if line[0] == "requeueing" else dict(last, **{line[1]: (line[0], int(line[2]))})
        for run_id, (action, attempts) in last.items():
            outcome = SUCCESS if attempts % 2 else FAILED
            expected = {outcome} if action == "finished" else {RUNNING, outcome}
            assert records[run_id]["attempts"] == attempts and records[run_id]["status"] in expected, run_id
        checked += len(last)
    assert checked >= 20
    with database.transaction():
        pass  # the next writer cleans up
    assert not [f for f in os.listdir(database.exp_dir) if f.endswith(".tmp") or ".corrupt-" in f]


def test_an_old_single_file_database_is_read_and_journaled(tmp_path):
    exp_dir = tmp_path / "exp"
    RunDatabase(str(exp_dir)).add_runs(grid(30))
    data = json.load(open(exp_dir / ".db.json"))
    with open(exp_dir / ".db.json", "w") as f:
        json.dump(data, f)  # one line, as TinyDB itself writes it
    database = RunDatabase(str(exp_dir), journal_from_bytes=0)
    record = database.claim(OWNER, "cpu", 600.0)
    assert json.load(open(exp_dir / ".db.json")) == data and os.path.exists(database.journal_path)
    assert statuses(str(exp_dir))[record["run_id"]] == RUNNING
    assert database.compact()
    assert json.load(open(exp_dir / ".db.json"))[JOURNAL_TABLE]["1"]["generation"] == 1


def test_tinydb_reads_and_edits_the_queue_through_queue_storage(tmp_path):
    database = journaled(str(tmp_path / "exp"), 30)
    record = database.claim(OWNER, "cpu", 600.0)
    with TinyDB(database.path) as db:  # .db.json alone: the claim is in the journal
        assert not db.table("runs").search(Query().status == RUNNING)
    with TinyDB(database.path, storage=QueueStorage) as db:
        assert [r["run_id"] for r in db.table("runs").search(Query().status == RUNNING)] == [record["run_id"]]
        assert JOURNAL_TABLE not in db.tables()
        db.table("runs").update({"status": ABORTED}, Query().run_id == record["run_id"])
    assert not os.path.exists(database.journal_path)  # folded in, under the lock
    assert statuses(database.exp_dir)[record["run_id"]] == ABORTED
    with TinyDB(database.path) as db:
        assert db.table("runs").get(Query().run_id == record["run_id"])["status"] == ABORTED
    with pytest.raises(ValueError, match="QueueStorage opens a queue's .db.json"):
        TinyDB(str(tmp_path / "exp" / "other.json"), storage=QueueStorage)


def test_dbutils_compact_folds_the_journal_in(tmp_path):
    database = journaled(str(tmp_path / "exp"), 30)
    record = database.claim(OWNER, "cpu", 600.0)
    assert "folded the journal" in run_dbutils("exp", tmp_path, "--compact").stdout
    with TinyDB(database.path) as db:
        assert db.table("runs").get(Query().run_id == record["run_id"])["status"] == RUNNING
    assert "no journal" in run_dbutils("exp", tmp_path, "--compact").stdout


def test_a_damaged_journal_is_refused_and_copied(tmp_path):
    database = journaled(str(tmp_path / "exp"), 30)
    database.claim(OWNER, "cpu", 600.0)
    with open(database.journal_path, "w") as f:
        f.write('{"runs": {"1": ')
    result = run_dbutils("exp", tmp_path, "--requeue")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the queue database {database.journal_path} cannot be read: it is not valid JSON" in result.stderr
    assert open(database.journal_path).read() == '{"runs": {"1": '  # never overwritten
    assert [f for f in os.listdir(database.exp_dir) if f.startswith(".db.journal.json.corrupt-")]
    with open(database.journal_path, "w") as f:
        json.dump({"runs": {}}, f)  # valid JSON, but not a journal
    with pytest.raises(DatabaseError, match="has no 'journal' table"):
        read_runs(database.exp_dir)


@pytest.mark.parametrize("code, advice", [(errno.ENOSPC, "is full"), (errno.EROFS, "read-only")])
def test_a_failed_journal_write_changes_nothing_and_says_why(tmp_path, monkeypatch, code, advice):
    database = journaled(str(tmp_path / "exp"), 30)
    database.claim(OWNER, "cpu", 600.0)
    before = {path: open(path, "rb").read() for path in (database.path, database.journal_path)}
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(".db.journal.json"):
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(DatabaseError) as error:
        database.claim(OWNER, "cpu", 600.0)
    assert f"could not write the queue database {database.journal_path}" in str(error.value)
    assert advice in str(error.value) and "Nothing was changed" in str(error.value)
    monkeypatch.undo()
    assert {path: open(path, "rb").read() for path in before} == before
    assert not [f for f in os.listdir(database.exp_dir) if f.endswith(".tmp")]



def test_a_compaction_between_a_readers_two_file_reads_undoes_nothing(tmp_path, monkeypatch):
    """Lock-free readers read the journal, then .db.json: a compaction in between makes them
    ignore the journal they read and see .db.json with everything (the other order would show
    the old .db.json without the journal: claims undone)."""
    database = journaled(str(tmp_path / "exp"), 50)
    for _ in range(10):
        database.claim(OWNER, "cpu", 600.0)  # the journal is full: the next claim compacts
    reader, compacted = RunDatabase(database.exp_dir), []
    for cached_file in (reader._store.main, reader._store.journal):
        def read(real=cached_file.read):
            tables = real()
            if not compacted:  # right after the reader's first file read
                compacted.append(database.claim(OWNER, "cpu", 600.0))
            return tables
        monkeypatch.setattr(cached_file, "read", read)
    running = [r["run_id"] for r in reader.records() if r["status"] == RUNNING]
    assert compacted and not os.path.exists(database.journal_path)
    assert running == [r["run_id"] for r in database.records()[:11]]


def test_the_local_manager_folds_the_journal_in_when_it_ends(tmp_path):
    spec = write_spec(tmp_path, "big", args=["--value a"], parameters={"seed": list(range(2500))},
                      **{"global": "--steps 1 --sleep 0"})
    root = tmp_path / "runs"
    assert run_manager(spec, root, "--queue_only").returncode == 0
    database = RunDatabase(str(root / "big"))
    assert os.path.getsize(database.path) >= JOURNAL_FROM_BYTES  # the size at which a queue journals
    with database.transaction() as transaction:  # every run but the last one done (a compaction)
        for doc_id, record in list(transaction.runs.items())[:-1]:
            transaction.put(doc_id, dict(record, status=SUCCESS))
    last = database.records()[-1]["run_id"]
    database.set_job_ids({last: "local"})  # a change in the journal
    assert os.path.exists(database.journal_path)
    result = run_manager(spec, root)
    assert result.returncode == 0, result.stderr
    assert not os.path.exists(database.journal_path)
    with TinyDB(database.path) as db:  # .db.json alone is complete again
        assert db.table("runs").get(Query().run_id == last)["status"] == SUCCESS
        assert len(db.table("runs").search(Query().status == SUCCESS)) == 2500
