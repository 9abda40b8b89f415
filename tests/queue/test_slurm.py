"""The Slurm backend, through submitit's local executor (same code path as on a cluster)."""
import os
import signal

from ovis import records
from ovis.queue.database import SUCCESS
from ovis.queue.view import read_runs

from .helpers import ledger_lines, run_manager, start_manager, wait_for, write_spec


def test_slurm_backend_runs_the_grid_as_one_array_and_writes_statuses_back(tmp_path):
    ledger = str(tmp_path / "ledger.txt")
    spec = write_spec(tmp_path, "array", args=["--value a", "--value b", "--value c"],
                      **{"global": f"--steps 2 --sleep 0.05 --ledger {ledger}"})
    root = tmp_path / "runs"
    result = run_manager(spec, root, "--backend", "slurm", "--cluster", "local", "--slurm_gpus", "0",
                         "--slurm_time", "10", "--wait", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "submitted 3 runs to local" in result.stdout
    runs = read_runs(str(root / "array"))
    assert [r["status"] for r in runs] == [SUCCESS] * 3
    assert all(r["job_id"] for r in runs) and len({r["job_id"] for r in runs}) == 3
    assert sorted(line[0] for line in ledger_lines(ledger)) == sorted(r["run_id"] for r in runs)
    for run in runs:
        assert records.read_outcome(run["run_dir"]) == records.SUCCESS
        assert run["device"] == "cpu" and run["attempts"] == 1
        assert f"{run['run_id']}: success" in result.stdout  # each task's result came back
    assert os.path.isdir(root / "array" / ".submitit")

    again = run_manager(spec, root, "--backend", "slurm", "--cluster", "local", "--slurm_gpus", "0")
    assert again.returncode == 0 and "nothing to submit" in again.stdout


def test_a_preempted_task_checkpoints_requeues_itself_and_resumes(tmp_path):
    ledger = str(tmp_path / "ledger.txt")
    spec = write_spec(tmp_path, "preempt", args=["--value a"], **{"global": f"--steps 40 --sleep 0.1 --ledger {ledger}"})
    root, exp_dir = tmp_path / "runs", str(tmp_path / "runs" / "preempt")
    # not run_manager: the local executor's job outlives the manager and keeps its output pipes open
    manager = start_manager(spec, root, "--backend", "slurm", "--cluster", "local", "--slurm_gpus", "0",
                            "--slurm_time", "10", log_path=tmp_path / "manager.log")
    assert manager.wait(timeout=120) == 0, open(tmp_path / "manager.log").read()
    steps = lambda: open(os.path.join(exp_dir, read_runs(exp_dir)[0]["run_id"], "steps.log")).read().split()  # noqa
    wait_for(lambda: read_runs(exp_dir)[0]["status"] == "running" and read_runs(exp_dir)[0]["pid"]
             and os.path.exists(os.path.join(exp_dir, read_runs(exp_dir)[0]["run_id"], "steps.log"))
             and len(steps()) >= 3, message="the task to make progress")
    task_pid = read_runs(exp_dir)[0]["owner"]["pid"]
    os.kill(task_pid, signal.SIGUSR2)  # what Slurm sends before a time-out or a preemption
    wait_for(lambda: read_runs(exp_dir)[0]["status"] == SUCCESS, timeout=180, message="the requeued task to finish")
    (run,) = read_runs(exp_dir)
    assert run["attempts"] == 2 and run["owner"]["pid"] != task_pid
    assert [h[1] for h in run["history"]][-4:] == ["running", "queued", "running", "success"]
    assert run["history"][-3][2] == "preempted on Slurm: checkpointed, requeued"  # 10 minutes were far from over
    starts = [int(line[2].split("=")[1]) for line in ledger_lines(ledger)]
    assert len(starts) == 2 and starts[0] == 0 and starts[1] >= 3
    assert steps() == [str(i) for i in range(1, 41)]
