"""The queue database: atomic writes, exclusive claims, liveness, recovery and requeue levels."""
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time

import filelock
import pytest

from ovis.queue.database import ABORTED, FAILED, QUEUED, RUNNING, SUCCESS, DatabaseError, RunDatabase
from ovis.queue.requeue import requeue_candidates
from ovis.queue.view import read_runs
from ovis.queue.process import HOST, ProcessIdentity, process_start_time, run_is_alive
from ovis.queue.spec import parse_spec

from .helpers import kill_writers


def grid(n: int):
    return parse_spec({"args": ["--x 1"], "parameters": {"seed": list(range(n))}}, "t", "/t.json").grid()


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_add_runs_inserts_only_new_grid_points(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"))
    assert len(database.add_runs(grid(3), meta={"exp": "t"})) == 3
    assert database.add_runs(grid(3)) == []
    added = database.add_runs(grid(5))
    assert added == [p.run_id for p in grid(5)[3:]]
    records = database.records()
    assert [r["index"] for r in records] == list(range(5))
    assert [r["run_id"] for r in records] == [p.run_id for p in grid(5)]
    assert {r["status"] for r in records} == {QUEUED} and {r["attempts"] for r in records} == {0}
    assert database.meta()["exp"] == "t"


def test_writes_are_atomic_and_a_failed_transaction_changes_nothing(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"))
    database.add_runs(grid(2))
    before = open(database.path).read()
    with pytest.raises(RuntimeError):
        with database.transaction() as transaction:
            for doc_id in list(transaction.runs):
                transaction.remove(doc_id)
            raise RuntimeError("midway")
    assert open(database.path).read() == before
    assert sorted(os.listdir(database.exp_dir)) == [".db.json", ".db.json.lock", ".db.json.lock.holder"]  # no temporary file left


def _claim_all(exp_dir: str, queue) -> None:
    database = RunDatabase(exp_dir)
    owner = ProcessIdentity.current()
    claimed = []
    while True:
        record = database.claim(owner, "cpu", 600.0)
        if record is None:
            break
        claimed.append(record["run_id"])
    queue.put(claimed)


def test_concurrent_claims_from_several_processes_take_each_run_once(tmp_path):
    exp_dir = str(tmp_path / "exp")
    RunDatabase(exp_dir).add_runs(grid(40))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    workers = [context.Process(target=_claim_all, args=(exp_dir, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    claimed = [queue.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join()
    every = [run_id for part in claimed for run_id in part]
    assert sorted(every) == sorted(p.run_id for p in grid(40))
    assert {r["status"] for r in RunDatabase(exp_dir).records()} == {RUNNING}


def test_claim_prefers_runs_that_were_started_before(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"))
    points = grid(3)
    database.add_runs(points)
    owner = ProcessIdentity.current()
    first = database.claim(owner, "cpu", 600.0)
    assert first["run_id"] == points[0].run_id and first["attempts"] == 1
    database.finish(first["run_id"], owner, ABORTED)
    database.requeue(1)
    again = database.claim(owner, "cpu", 600.0)
    assert again["run_id"] == points[0].run_id and again["attempts"] == 2
    assert database.claim(owner, "cpu", 600.0, run_id=points[0].run_id) is None  # not queued any more
    assert database.claim(owner, "cpu", 600.0, run_id=points[2].run_id)["run_id"] == points[2].run_id


def test_only_the_owner_can_record_an_outcome(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"))
    database.add_runs(grid(1))
    owner = ProcessIdentity.current()
    record = database.claim(owner, "cpu", 600.0)
    other = ProcessIdentity(HOST, 1, "0")
    assert not database.finish(record["run_id"], other, SUCCESS)
    assert database.finish(record["run_id"], owner, FAILED, returncode=1, error="boom\ntrace")
    (view,) = read_runs(database.exp_dir)
    assert view["status"] == FAILED and view["message"] == "boom" and view["returncode"] == 1
    assert view["run_dir"] == os.path.join(database.exp_dir, view["run_id"])
    assert [h[1] for h in view["history"]] == [QUEUED, RUNNING, FAILED]


def test_a_corrupted_database_is_refused_and_backed_up(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"))
    database.add_runs(grid(2))
    with open(database.path, "w") as f:
        f.write('{"runs": {"1": {"run_id": ')
    with pytest.raises(DatabaseError) as error:
        database.records()
    assert "not valid JSON (line 1, column 27" in str(error.value)
    backups = [f for f in os.listdir(database.exp_dir) if f.startswith(".db.json.corrupt-")]
    assert len(backups) == 1 and backups[0] in str(error.value)
    with pytest.raises(DatabaseError):
        database.add_runs(grid(2))  # a transaction refuses it too, and does not overwrite it
    assert len([f for f in os.listdir(database.exp_dir) if f.startswith(".db.json.corrupt-")]) == 1  # one backup
    assert open(database.path).read() == '{"runs": {"1": {"run_id": '
    with open(database.path, "w") as f:
        json.dump({"runs": [1, 2]}, f)
    with pytest.raises(DatabaseError, match="does not hold TinyDB tables"):
        read_runs(database.exp_dir)


def test_missing_database_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="run manager.py --exp nothing first"):
        read_runs(str(tmp_path / "nothing"))


def test_lock_timeout_explains_how_to_clear_a_stale_lock(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"), lock_timeout=0.3)
    database.add_runs(grid(1))
    holder = filelock.FileLock(database.lock_path)
    acquired, release = threading.Event(), threading.Event()

    def hold():  # another thread = another lock context, like another process
        with holder:
            acquired.set()
            release.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    acquired.wait(30)
    try:
        with pytest.raises(DatabaseError, match=r"could not lock .* within 0 s: it is held by .*--lock_timeout"):
            database.add_runs(grid(2))
    finally:
        release.set()
        thread.join()
    assert len(database.add_runs(grid(2))) == 1


WRITER = """
import sys
from ovis.queue.database import RunDatabase
from ovis.queue.process import ProcessIdentity
database = RunDatabase(sys.argv[1])
owner = ProcessIdentity.current()
run_ids = [record["run_id"] for record in database.records()]
while True:
    for run_id in run_ids:
        database.claim(owner, "cpu", 600.0, run_id=run_id)
        print("wrote", flush=True)
    database.requeue(4)
"""


def test_killing_a_writer_at_any_moment_leaves_a_readable_database(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"))
    database.add_runs(grid(100))
    counts = []
    kill_writers(database.exp_dir, WRITER, (0.0, 0.07, 0.19, 0.31),
                 after_each=lambda: counts.append(len(database.records())))
    assert counts == [100] * 4
    assert not [f for f in os.listdir(database.exp_dir) if f.startswith(".db.json.corrupt")]


def test_liveness_uses_pid_and_start_time_here_and_heartbeat_elsewhere():
    me = ProcessIdentity.current()
    alive_owner = {"host": HOST, "owner": me.to_dict(), "pid": None}
    assert run_is_alive(alive_owner)
    reused = {"host": HOST, "owner": {"pid": os.getpid(), "start_time": "1"}, "pid": None}
    assert process_start_time(os.getpid()) != "1" and not run_is_alive(reused)
    orphan_child = {"host": HOST, "owner": {"pid": dead_pid(), "start_time": None}, "pid": os.getpid(),
                    "pid_start": process_start_time(os.getpid())}
    assert run_is_alive(orphan_child)  # the manager is gone but its child still checkpoints
    now = time.time()
    remote = {"host": "elsewhere", "owner": {"pid": os.getpid()}, "heartbeat": now - 100, "stale_after": 600}
    assert run_is_alive(remote, now)
    assert not run_is_alive(dict(remote, heartbeat=now - 700), now)


def make_queue_with_every_status(exp_dir: str) -> RunDatabase:
    """Six runs: queued, success, failed, aborted, running (alive: this process) and running
    whose process is gone."""
    database = RunDatabase(exp_dir)
    points = grid(6)
    database.add_runs(points)
    me = ProcessIdentity.current()
    gone = ProcessIdentity(HOST, dead_pid(), None)
    for point, (status, owner) in zip(points[1:], [(SUCCESS, me), (FAILED, me), (ABORTED, me), (RUNNING, me),
                                                   (RUNNING, gone)]):
        database.claim(owner, "cpu", 600.0, run_id=point.run_id)
        if status != RUNNING:
            database.finish(point.run_id, owner, status)
    return database


@pytest.mark.parametrize("level, requeued", [
    (1, {ABORTED: [3]}),
    (2, {FAILED: [2], ABORTED: [3]}),
    (3, {FAILED: [2], ABORTED: [3], RUNNING: [5]}),
    (4, {SUCCESS: [1], FAILED: [2], ABORTED: [3], RUNNING: [5]}),
])
def test_requeue_levels(tmp_path, level, requeued):
    database = make_queue_with_every_status(str(tmp_path / "exp"))
    ids = [r["run_id"] for r in database.records()]
    assert [r["run_id"] for r in requeue_candidates(database.records(), level)] == sorted(
        (ids[i] for ids_ in requeued.values() for i in ids_), key=ids.index)
    cleared = []
    result = database.requeue(level, prepare=cleared.append)
    assert result == {status: [ids[i] for i in indices] for status, indices in requeued.items()}
    assert sorted(cleared) == sorted(database.run_dir(ids[i]) for indices in requeued.values() for i in indices)
    statuses = [r["status"] for r in database.records()]
    expected = [QUEUED, SUCCESS, FAILED, ABORTED, RUNNING, RUNNING]
    for indices in requeued.values():
        for i in indices:
            expected[i] = QUEUED
    assert statuses == expected
    assert database.records()[4]["status"] == RUNNING  # a live run is never requeued
    requeued_record = database.records()[3]
    assert requeued_record["pid"] is None and requeued_record["error"] is None and requeued_record["attempts"] == 1


def test_requeue_level_is_checked(tmp_path):
    database = make_queue_with_every_status(str(tmp_path / "exp"))
    with pytest.raises(ValueError, match="requeue level 7 is not one of 1: aborted runs"):
        database.requeue(7)


def test_recover_marks_only_dead_running_runs_aborted(tmp_path):
    database = make_queue_with_every_status(str(tmp_path / "exp"))
    recovered = database.recover(by="test")
    ids = [r["run_id"] for r in database.records()]
    assert [r["run_id"] for r in recovered] == [ids[5]]
    view = read_runs(database.exp_dir)
    assert [r["status"] for r in view] == [QUEUED, SUCCESS, FAILED, ABORTED, RUNNING, ABORTED]
    assert view[4]["alive"] and not view[5]["alive"]
    assert "ended without reporting" in view[5]["error"]
