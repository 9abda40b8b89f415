"""The queue's fault campaign, one test per failure: nothing lost, one clear message, no debris."""
import contextlib
import errno
import json
import os
import signal
import stat
import subprocess
import sys
import tempfile

import pytest

from ovis import exit_codes, records
from ovis.queue import storage
from ovis.queue.database import ABORTED, FAILED, QUEUED, SUCCESS, RunDatabase
from ovis.queue.view import read_runs
from ovis.queue.executor import classify_exit
from ovis.queue.journal import JOURNAL_FROM_BYTES
from ovis.queue.process import ProcessIdentity
from ovis.queue.spec import parse_spec

from .helpers import ROOT, kill_writers, run_dbutils, run_manager, start_manager, wait_for, write_spec


def grid(n: int):
    return parse_spec({"args": ["--x 1"], "parameters": {"seed": list(range(n))}}, "t", "/t.json").grid()


def finished_queue(exp_dir: str, n: int, status: str = SUCCESS, **options) -> RunDatabase:
    """``n`` runs ended with ``status`` (written in one transaction), each with its run folder
    and outcome marker."""
    database = RunDatabase(exp_dir, **options)
    database.add_runs(grid(n))
    owner = ProcessIdentity.current().to_dict()
    with database.transaction() as transaction:
        for doc_id, record in list(transaction.runs.items()):
            transaction.put(doc_id, dict(record, status=status, attempts=1, owner=owner, returncode=0))
            os.makedirs(database.run_dir(record["run_id"]))
            records.write_outcome(database.run_dir(record["run_id"]), status)
    return database


def fail_writes(monkeypatch, code: int, path_part: str = ".db.json"):
    """Make every rename onto the database fail with ``code`` (as a read-only folder or a full disk
    does; as root, chmod cannot make a folder read-only)."""
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).endswith(path_part):
            raise OSError(code, os.strerror(code), str(dst))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("code, advice", [(errno.ENOSPC, "is full: free some space"),
                                          (errno.EROFS, "read-only for this user")])
def test_failed_requeue_write_keeps_the_outcome_files_and_says_why(tmp_path, monkeypatch, code, advice):
    database = finished_queue(str(tmp_path / "exp"), 24)
    before = open(database.path, "rb").read()
    fail_writes(monkeypatch, code)
    result = run_dbutils("exp", tmp_path, "--requeue", "--requeue_level", "4")
    assert result.returncode == exit_codes.for_os_error(OSError(code, "")) and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and database.path in result.stderr and advice in result.stderr
    assert "Nothing was changed" in result.stderr
    monkeypatch.undo()
    assert open(database.path, "rb").read() == before
    assert all(records.read_outcome(r["run_dir"]) == SUCCESS for r in read_runs(database.exp_dir))  # 24 kept
    assert not [f for f in os.listdir(database.exp_dir) if f.endswith(".tmp")]
    # once the write works, the markers go only after the database says queued
    assert "requeued 24 run(s)" in run_dbutils("exp", tmp_path, "--requeue", "--requeue_level", "4").stdout
    assert all(records.read_outcome(r["run_dir"]) is None for r in read_runs(database.exp_dir))


def test_a_transaction_of_any_size_is_all_or_nothing(tmp_path):
    database = finished_queue(str(tmp_path / "exp"), 1500, status=ABORTED)
    before = open(database.path, "rb").read()
    with pytest.raises(RuntimeError, match="midway"):
        with database.transaction() as transaction:
            for doc_id, record in list(transaction.runs.items()):
                transaction.put(doc_id, dict(record, status=QUEUED))
            raise RuntimeError("midway")
    assert open(database.path, "rb").read() == before  # more than 1,000 updates, nothing written


@pytest.mark.parametrize("journal_from_bytes", [0, JOURNAL_FROM_BYTES])
def test_a_transaction_writes_one_file_once(tmp_path, monkeypatch, journal_from_bytes):
    database = finished_queue(str(tmp_path / "exp"), 50, status=ABORTED, journal_from_bytes=journal_from_bytes)
    writes = []
    real_open = storage.atomic_open
    monkeypatch.setattr(storage, "atomic_open", lambda path, *args: writes.append(path) or real_open(path, *args))
    assert len(database.requeue(1)[ABORTED]) == 50
    database.set_job_ids({r["run_id"]: "7_%d" % i for i, r in enumerate(database.records())})
    owner = ProcessIdentity.current()
    database.finish(database.claim(owner, "cpu", 600.0)["run_id"], owner, SUCCESS)
    assert len(writes) == 4
    assert (database.journal_path in writes) == (journal_from_bytes == 0)  # the claim and finish: the journal


@pytest.mark.parametrize("content, problem", [
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe garbage", "not valid JSON"),
    (b'{"runs": {"1": {"run_id": ', "not valid JSON (line 1, column 27"),
    (b'{\n"runs": {\n"1": {"run_id": "a"},\n"2": {"run_id": "b\xff\xfe"}\n}\n}\n',
     "not valid JSON (line 4, column 19: byte 0xff is not UTF-8) - binary data?"),
])
def test_an_unreadable_database_gets_one_message_and_a_copy(tmp_path, content, problem):
    database = finished_queue(str(tmp_path / "exp"), 2)
    with open(database.path, "wb") as f:
        f.write(content)
    for command in (["--check"], ["--requeue"]):
        result = run_dbutils("exp", tmp_path, *command)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert problem in result.stderr and database.path in result.stderr and "a copy was saved to" in result.stderr
    copies = [f for f in os.listdir(database.exp_dir) if ".corrupt-" in f]
    assert len(copies) == 1 and open(os.path.join(database.exp_dir, copies[0]), "rb").read() == content
    assert open(database.path, "rb").read() == content  # never overwritten


@contextlib.contextmanager
def read_only_view(folder: str):
    """``folder`` mounted again, read-only (a read-only file system: even root cannot write)."""
    view = tempfile.mkdtemp(prefix="ovis-readonly-")
    mounted = subprocess.run(["mount", "--bind", folder, view], capture_output=True, text=True)
    if mounted.returncode != 0:
        os.rmdir(view)
        pytest.skip(f"cannot bind-mount a read-only view here ({mounted.stderr.strip()[-80:]})")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", view], check=True, capture_output=True)
        yield view
    finally:
        subprocess.run(["umount", view], check=True)
        os.rmdir(view)


def test_a_read_only_folder_gets_one_message(tmp_path):
    database = finished_queue(str(tmp_path / "exp"), 3, status=ABORTED)
    before = open(database.path, "rb").read()
    with read_only_view(str(tmp_path)) as view:
        result = subprocess.run([sys.executable, os.path.join(ROOT, "dbutils.py"), "--exp", "exp", "--root", view,
                                 "--requeue"], capture_output=True, text=True, cwd=ROOT,
                                env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == exit_codes.BAD_ARGUMENTS and "Traceback" not in result.stderr, result.stderr
    assert "read-only" in result.stderr and os.path.join(view, "exp") in result.stderr
    assert open(database.path, "rb").read() == before
    assert all(records.read_outcome(r["run_dir"]) == ABORTED for r in read_runs(database.exp_dir))


def test_damaged_records_are_reported_and_repaired(tmp_path):
    database = finished_queue(str(tmp_path / "exp"), 4, status=FAILED)
    data = json.load(open(database.path))
    runs = data["runs"]
    lost_id = runs["1"].pop("run_id")            # a record without run_id
    del runs["2"]["status"]                      # a record without status (its folder says failed)
    removed = runs.pop("3")                      # a record removed by hand (its folder stays)
    with open(database.path, "w") as f:
        json.dump(data, f)
    database.meta()
    check = run_dbutils("exp", tmp_path, "--check")
    assert check.returncode == 0, check.stderr
    assert "1 record(s) without run_id" in check.stdout
    assert f"1 record(s) without a valid status, never run nor requeued: {runs['2']['run_id']}" in check.stdout
    assert "2 run folder(s) without a record (removed by hand?)" in check.stdout  # and the one without run_id
    assert removed["run_id"] in check.stdout.split("run folder(s) without a record")[1]
    assert "'dbutils.py --repair' fixes them" in check.stdout
    for command in (["--requeue", "--requeue_level", "4"], ["--list"], ["--show_failed"]):  # no KeyError
        result = run_dbutils("exp", tmp_path, *command)
        assert result.returncode == 0 and not result.stderr, (command, result.stderr)
    database.requeue(2)  # what --requeue_level 4 did is undone: back to failed for the repair below
    with database.transaction() as transaction:
        for doc_id, record in list(transaction.runs.items()):
            if record.get("status") == QUEUED:
                transaction.put(doc_id, dict(record, status=FAILED))
    assert run_dbutils("exp", tmp_path, "--repair").returncode == 1  # not a terminal, no --yes: refused
    repaired = run_dbutils("exp", tmp_path, "--repair", "--yes")
    assert f"restored the run_id of record 1: {lost_id}" in repaired.stdout
    assert f"{runs['2']['run_id']}: status set to failed" in repaired.stdout
    assert f"{removed['run_id']}: folder without record, not in the spec's grid" in repaired.stdout
    assert {r["run_id"]: r["status"] for r in read_runs(database.exp_dir)} == {
        lost_id: FAILED, runs["2"]["run_id"]: FAILED, runs["4"]["run_id"]: FAILED}
    left = run_dbutils("exp", tmp_path, "--check").stdout
    assert "without run_id" not in left and "valid status" not in left
    assert f"1 run folder(s) without a record (removed by hand?): {removed['run_id']}" in left  # needs the spec


def test_a_record_removed_by_hand_is_re_added_with_a_notice(tmp_path):
    spec = write_spec(tmp_path, "hand", args=["--value a", "--value b"], **{"global": "--steps 1 --sleep 0"})
    root = tmp_path / "runs"
    assert run_manager(spec, root).returncode == 0
    exp_dir = str(root / "hand")
    data = json.load(open(os.path.join(exp_dir, ".db.json")))
    removed = data["runs"].pop("2")
    with open(os.path.join(exp_dir, ".db.json"), "w") as f:
        json.dump(data, f)
    assert removed["run_id"] in run_dbutils("hand", root, "--check").stdout
    result = run_manager(spec, root)
    assert "1 run(s) were not in the queue but have a folder" in result.stdout
    (again,) = [r for r in read_runs(exp_dir) if r["run_id"] == removed["run_id"]]
    assert "re-added from the spec: its folder existed" in again["history"][0][2]


WRITER = """
import sys
from ovis.queue.database import RunDatabase
from ovis.queue.process import ProcessIdentity
database = RunDatabase(sys.argv[1])
owner = ProcessIdentity.current()
print("start", flush=True)
while True:
    database.requeue(4)
    database.claim(owner, "cpu", 600.0)
"""


def test_killed_writers_leave_no_temporary_files_behind(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"))
    database.add_runs(grid(500))
    counts = []
    kill_writers(database.exp_dir, WRITER, (0.2, 0.35, 0.5, 0.65),
                 after_each=lambda: counts.append(len(database.records())))
    assert counts == [500] * 4
    with database.transaction():
        pass  # the next writer cleans up
    assert not [f for f in os.listdir(database.exp_dir) if f.endswith(".tmp")]


def test_a_held_lock_is_named_by_dbutils_and_the_manager(tmp_path):
    database = finished_queue(str(tmp_path / "exp"), 1)
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from ovis.queue.database import RunDatabase\n"
        "with RunDatabase(sys.argv[1]).transaction():\n    print('held', flush=True); time.sleep(60)"),
        database.exp_dir],
        stdout=subprocess.PIPE, env=dict(os.environ, PYTHONPATH=ROOT), text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        refused = run_dbutils("exp", tmp_path, "--purge_lock")
        assert refused.returncode == 1 and f"pid {holder.pid}" in refused.stderr and "not removed" in refused.stderr
        assert os.path.exists(database.lock_path)
        waited = run_dbutils("exp", tmp_path, "--requeue", "--lock_timeout", "3")
        assert waited.returncode == 1
        assert f"waiting up to 3 s for the lock {database.lock_path}, held by" in waited.stderr
        assert f"pid {holder.pid}" in waited.stderr.splitlines()[0]
        spec = write_spec(tmp_path, "exp", args=["--value a"])
        manager = run_manager(spec, tmp_path, "--lock_timeout", "3")
        assert manager.returncode == 1 and "could not lock" in manager.stderr
        assert f"waiting up to 3 s for the lock {database.lock_path}, held by" in manager.stderr
        assert f"pid {holder.pid}" in manager.stderr.splitlines()[0] and "stop it if it hangs" in manager.stderr
    finally:
        holder.kill()
        holder.wait()
    assert "lock removed (no process held it)" in run_dbutils("exp", tmp_path, "--purge_lock").stdout


def test_a_sigkilled_run_records_the_signal_and_its_last_output(tmp_path, stop_processes):
    spec = write_spec(tmp_path, "oom", args=["--value a"], **{"global": "--steps 400 --sleep 0.1"})
    root = tmp_path / "runs"
    manager = start_manager(spec, root, log_path=tmp_path / "m.log")
    stop_processes.append(manager)
    exp_dir = str(root / "oom")
    log = lambda: open(os.path.join(read_runs(exp_dir)[0]["run_dir"], "process.log")).read()  # noqa: E731
    wait_for(lambda: os.path.exists(os.path.join(exp_dir, ".db.json")) and read_runs(exp_dir)[0].get("pid")
             and "CUDA_VISIBLE_DEVICES" in log(), message="the run to start")
    os.kill(read_runs(exp_dir)[0]["pid"], signal.SIGKILL)  # as the kernel's OOM killer does
    assert manager.wait(timeout=120) == 1
    (run,) = read_runs(exp_dir)
    assert run["status"] == FAILED and run["returncode"] == -signal.SIGKILL
    assert run["failure"] == "out_of_memory" and "as the kernel's OOM killer does" in run["failure_detail"]
    assert run["message"].startswith("killed by SIGKILL (out of memory?); last lines of its output:")
    assert "CUDA_VISIBLE_DEVICES" in run["error"]  # the fake script's first line
    shown = run_dbutils("oom", root, "--show-failed").stdout
    assert "killed by SIGKILL" in shown and "no error output recorded" not in shown
    assert classify_exit(-signal.SIGKILL, None, False)[1] == "killed by SIGKILL (out of memory?)"


def test_the_database_file_is_what_tinydb_reads(tmp_path):
    from tinydb import TinyDB
    database = finished_queue(str(tmp_path / "exp"), 5)
    with TinyDB(database.path) as db:
        assert [r["run_id"] for r in db.table("runs").all()] == [r["run_id"] for r in database.records()]
        db.table("runs").update({"status": QUEUED}, doc_ids=[2])  # a user's edit with TinyDB itself
    assert [r["status"] for r in database.records()] == [SUCCESS, QUEUED, SUCCESS, SUCCESS, SUCCESS]
    record = database.claim(ProcessIdentity.current(), "cpu", 600.0)
    assert record["run_id"] == database.records()[1]["run_id"] and record["argv"] == list(grid(5)[1].argv)
    assert open(database.path).read().count("\n") == 5 + 4  # one record a line
    assert stat.S_IMODE(os.stat(database.path).st_mode) & 0o600 == 0o600


def test_outcome_temporaries_left_by_a_cut_marker_write_are_removed(tmp_path):
    spec = write_spec(tmp_path, "tmp", args=["--value a"], **{"global": "--steps 1 --sleep 0"})
    root = tmp_path / "runs"
    assert run_manager(spec, root, "--queue_only").returncode == 0
    (run,) = read_runs(str(root / "tmp"))
    os.makedirs(run["run_dir"])
    leaked = os.path.join(run["run_dir"], "outcome.txt.k3j9x.tmp")  # as a signal during atomic_write leaves it
    open(leaked, "w").write("Abort")
    assert run_manager(spec, root).returncode == 0
    assert not os.path.exists(leaked) and records.read_outcome(run["run_dir"]) == SUCCESS
