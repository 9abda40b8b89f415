"""Unreadable queue files: every intact entry is kept, the lost ones are named, and runs take their
status from their folders (a success never runs again)."""
import os

from ovis import records
from ovis.queue.database import FAILED, QUEUED, RUNNING, SUCCESS, RunDatabase
from ovis.queue.view import read_runs
from ovis.queue.process import ProcessIdentity
from ovis.queue.spec import parse_spec

from .helpers import ledger_lines, run_dbutils, run_manager, write_spec

OWNER = ProcessIdentity.current()
GARBAGE = b"\x00\x93\xfe\xff garbage \x7f"


def grid(n: int):
    return parse_spec({"args": ["--x 1"], "parameters": {"seed": list(range(n))}}, "t", "/t.json").grid()


def finish(database: RunDatabase, status: str) -> str:
    record = database.claim(OWNER, "cpu", 600.0)
    os.makedirs(database.run_dir(record["run_id"]), exist_ok=True)
    if status == RUNNING:
        database.set_process(record, OWNER)  # its liveness file names a live process (this one)
    else:
        assert database.finish(record["run_id"], OWNER, status, "test")
        records.write_outcome(database.run_dir(record["run_id"]), status)
    return record["run_id"]


def damage_lines(path: str, run_ids, keep_doc_id: bool) -> None:
    """Overwrite the lines naming ``run_ids`` with binary garbage (after their document id if
    ``keep_doc_id``)."""
    lines = open(path, "rb").read().split(b"\n")
    for i, line in enumerate(lines):
        if any(run_id.encode() in line for run_id in run_ids):
            lines[i] = (line[:line.index(b"{")] if keep_doc_id else b"") + GARBAGE
    open(path, "wb").write(b"\n".join(lines))


def test_a_corrupt_journal_is_salvaged_and_no_finished_run_runs_again(tmp_path):
    database = RunDatabase(str(tmp_path / "exp"), journal_from_bytes=0)
    database.add_runs(grid(200), meta={"exp": "exp"})  # journal of up to sqrt(2 * 201) = 20 records
    done = [finish(database, SUCCESS) for _ in range(5)]
    failed, running = finish(database, FAILED), finish(database, RUNNING)
    assert os.path.exists(database.journal_path)
    damage_lines(database.journal_path, [done[0], running], keep_doc_id=True)
    damage_lines(database.journal_path, [done[1]], keep_doc_id=False)  # a line nothing can be told of

    refused = run_dbutils("exp", tmp_path, "--check")
    assert refused.returncode == 1 and "--repair: it keeps every intact record" in refused.stderr
    repaired = run_dbutils("exp", tmp_path, "--repair", "--yes")
    assert repaired.returncode == 0, repaired.stderr
    out = repaired.stdout
    assert f"the journal {database.journal_path}" in out and "lost 3 line(s)" in out
    assert "unreadable, its record unknown" in out and "document" in out
    assert f"{done[0]} -> success (its outcome.txt)" in out and f"{done[1]} -> success (its outcome.txt)" in out
    assert f"{running} -> running (its process {OWNER.host} pid {OWNER.pid} is alive)" in out

    runs = {r["run_id"]: r for r in read_runs(database.exp_dir)}
    assert len(runs) == 200 and not os.path.exists(database.journal_path)
    assert [runs[run_id]["status"] for run_id in done] == [SUCCESS] * 5
    assert runs[failed]["status"] == FAILED and runs[failed]["history"][-1][2] == "test"  # intact entry kept
    assert runs[running]["status"] == RUNNING and runs[running]["alive"]
    assert sum(r["status"] == QUEUED for r in runs.values()) == 193
    assert [f for f in os.listdir(database.exp_dir) if f.startswith(".db.journal.json.corrupt-")]
    assert run_dbutils("exp", tmp_path, "--check").returncode == 0


def finished_runs(tmp_path, name: str, n: int = 3):
    ledger = str(tmp_path / "ledger.txt")
    spec = write_spec(tmp_path, name, args=[f"--value {i}" for i in range(n)],
                      **{"global": f"--steps 1 --sleep 0 --ledger {ledger}"})
    root = tmp_path / "runs"
    assert run_manager(spec, root).returncode == 0
    return spec, root, str(root / name), ledger


def test_a_re_created_queue_keeps_the_status_of_finished_runs(tmp_path):
    spec, root, exp_dir, ledger = finished_runs(tmp_path, "moved")
    os.rename(os.path.join(exp_dir, ".db.json"), os.path.join(exp_dir, "db.json.moved-away"))
    result = run_manager(spec, root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 run(s) were not in the queue but have a folder" in result.stdout and "(3 success" in result.stdout
    assert len(ledger_lines(ledger)) == 3  # nothing ran again
    runs = read_runs(exp_dir)
    assert [r["status"] for r in runs] == [SUCCESS] * 3
    assert all("status from its outcome.txt" in r["history"][-1][2] for r in runs)


def test_the_advice_for_a_corrupt_database_works(tmp_path):
    spec, root, exp_dir, ledger = finished_runs(tmp_path, "corrupt", n=4)
    database = RunDatabase(exp_dir)
    lost, kept = database.records()[1], database.records()[2]
    damage_lines(database.path, [lost["run_id"]], keep_doc_id=True)
    refused = run_dbutils("corrupt", root, "--check")
    assert refused.returncode == 1 and "binary data?" in refused.stderr
    advice = refused.stderr.split("Run ")[1].split(":")[0]  # dbutils.py --exp corrupt --root ... --repair
    assert advice == f"dbutils.py --exp corrupt --root {root} --repair"
    repaired = run_dbutils("corrupt", root, "--repair", "--yes")
    assert repaired.returncode == 0, repaired.stderr
    assert "lost 1 line(s)\n  line 7: document 2 of table 'runs'\n1 run record(s) lost: document 2" in repaired.stdout
    assert f"{lost['run_id']}: re-added as success" in repaired.stdout
    runs = {r["run_id"]: r for r in read_runs(exp_dir)}
    assert [r["status"] for r in runs.values()] == [SUCCESS] * 4
    assert runs[kept["run_id"]]["history"] == kept["history"]  # intact records keep their history
    check = run_dbutils("corrupt", root, "--check")
    assert check.returncode == 0 and "problems" not in check.stdout
    assert run_manager(spec, root).returncode == 0 and len(ledger_lines(ledger)) == 4  # nothing ran again
