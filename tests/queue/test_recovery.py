"""Managers that outlive a killed peer take over its runs, with real processes and real kills."""
import os
import signal

from ovis.queue.database import SUCCESS
from ovis.queue.view import read_runs

from .helpers import ledger_lines, pid_gone, start_manager, wait_for, write_spec


def steps(run: dict) -> list:
    path = os.path.join(run["run_dir"], "steps.log")
    return open(path).read().split() if os.path.exists(path) else []


def test_a_living_manager_requeues_and_runs_the_runs_of_a_killed_one(tmp_path, stop_processes):
    ledger = str(tmp_path / "ledger.txt")
    spec = write_spec(tmp_path, "peers", args=["--steps 200", "--steps 300"],
                      **{"global": f"--sleep 0.05 --ledger {ledger}"})
    root, exp_dir = tmp_path / "runs", str(tmp_path / "runs" / "peers")
    first = start_manager(spec, root, "--heartbeat", "1", log_path=tmp_path / "first.log")
    stop_processes.append(first)
    wait_for(lambda: os.path.exists(os.path.join(exp_dir, ".db.json")) and len(steps(read_runs(exp_dir)[0])) >= 3,
             message="the first manager's run to make progress")
    second = start_manager(spec, root, "--heartbeat", "1", "--processes", "2", log_path=tmp_path / "second.log")
    stop_processes.append(second)
    wait_for(lambda: len(ledger_lines(ledger)) == 2, message="the second manager to start the other run")
    orphan = read_runs(exp_dir)[0]
    first.send_signal(signal.SIGKILL)
    first.wait()
    wait_for(lambda: pid_gone(orphan["pid"]), timeout=60, message="the orphaned run to checkpoint and exit")
    assert second.wait(timeout=180) == 0, open(tmp_path / "second.log").read()
    log = open(tmp_path / "second.log").read()
    assert "requeued 1 run(s) of dead managers" in log
    taken_over, own = read_runs(exp_dir)
    assert [taken_over["status"], own["status"]] == [SUCCESS, SUCCESS]
    assert taken_over["attempts"] == 2 and steps(taken_over) == [str(i) for i in range(1, 201)]  # resumed
    assert [line[0] for line in ledger_lines(ledger)].count(taken_over["run_id"]) == 2
    assert int(ledger_lines(ledger)[2][2].split("=")[1]) >= 3  # from its checkpoint
    assert taken_over["finished"] < own["finished"]  # taken over while the other run was still going
