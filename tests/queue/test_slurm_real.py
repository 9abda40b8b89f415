"""The Slurm backend against a real single-node Slurm on localhost (``slurm_cluster.py``).

Skipped with the reason when Slurm cannot start here (not installed, not root). Slow (about 4
minutes): Slurm starts a requeued job only after a delay of about two minutes.
"""
import os
import subprocess

import pytest

from ovis.queue.database import ABORTED, QUEUED, SUCCESS
from ovis.queue.view import read_runs

from .helpers import environment, ledger_lines, run_dbutils, run_manager, wait_for, write_spec
from .slurm_cluster import ClusterUnavailable, start_cluster, stop_cluster

pytestmark = pytest.mark.slow
SLURM_OPTIONS = ("--backend", "slurm", "--cluster", "slurm", "--slurm_gpus", "0", "--slurm_cpus", "1",
                 "--slurm_mem", "0.25", "--slurm_time", "10")


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("slurm"))
    try:
        cluster = start_cluster(folder)
    except ClusterUnavailable as error:
        pytest.skip(f"no local Slurm: {error}")
    yield cluster
    stop_cluster(cluster)


def slurm_env(slurm) -> dict:
    return dict(environment(), SLURM_CONF=slurm["env"]["SLURM_CONF"])


def started_long_run(tmp_path, name: str, slurm):
    """A 300-step run submitted to Slurm, once it has made progress: ``(spec, root, exp_dir, ledger,
    job_id)``."""
    ledger = str(tmp_path / "ledger.txt")
    spec = write_spec(tmp_path, name, args=["--value a"], **{"global": f"--steps 300 --sleep 0.1 --ledger {ledger}"})
    root, exp_dir = tmp_path / "runs", str(tmp_path / "runs" / name)
    assert run_manager(spec, root, *SLURM_OPTIONS, env=slurm_env(slurm)).returncode == 0
    wait_for(lambda: steps_done(exp_dir) >= 3, timeout=180, message="the task to make progress")
    return spec, root, exp_dir, ledger, read_runs(exp_dir)[0]["job_id"]


def steps_done(exp_dir: str) -> int:
    runs = read_runs(exp_dir)
    path = os.path.join(runs[0]["run_dir"], "steps.log") if runs else ""
    return len(open(path).read().split()) if path and os.path.exists(path) else 0


def starts(ledger: str) -> list:
    return [int(line[2].split("=")[1]) for line in ledger_lines(ledger)]


def test_a_grid_is_one_array_job_and_statuses_come_back(tmp_path, slurm):
    spec = write_spec(tmp_path, "array", args=["--value a", "--value b", "--value c"],
                      **{"global": "--steps 2 --sleep 0.05"})
    root = tmp_path / "runs"
    result = run_manager(spec, root, *SLURM_OPTIONS, env=slurm_env(slurm))
    assert result.returncode == 0 and "submitted 3 runs to slurm" in result.stdout, result.stdout + result.stderr
    exp_dir = str(root / "array")
    wait_for(lambda: [r["status"] for r in read_runs(exp_dir)] == [SUCCESS] * 3, timeout=180,
             message="the array's tasks to finish")
    job_ids = [r["job_id"] for r in read_runs(exp_dir)]
    assert len({job_id.split("_")[0] for job_id in job_ids}) == 1  # one array job
    assert sorted(job_id.split("_")[1] for job_id in job_ids) == ["0", "1", "2"]


def test_scancel_ends_aborted_and_the_requeued_run_resumes(tmp_path, slurm):
    spec, root, exp_dir, ledger, job_id = started_long_run(tmp_path, "cancel", slurm)
    subprocess.run(["scancel", job_id], env=slurm["env"], check=True)
    wait_for(lambda: read_runs(exp_dir)[0]["status"] == ABORTED, timeout=120, message="the run to end aborted")
    assert "requeued 1 run(s) (1 aborted)" in run_dbutils("cancel", root, "--requeue").stdout
    assert read_runs(exp_dir)[0]["status"] == QUEUED
    assert run_manager(spec, root, *SLURM_OPTIONS, env=slurm_env(slurm)).returncode == 0
    wait_for(lambda: read_runs(exp_dir)[0]["status"] == SUCCESS, timeout=240, message="the resumed run to finish")
    (run,) = read_runs(exp_dir)
    assert run["attempts"] == 2 and starts(ledger)[0] == 0 and starts(ledger)[1] >= 3  # from its checkpoint
    assert open(os.path.join(run["run_dir"], "steps.log")).read().split() == [str(i) for i in range(1, 301)]


def test_a_job_requeued_by_slurm_resumes_and_is_counted_once(tmp_path, slurm):
    _, root, exp_dir, ledger, job_id = started_long_run(tmp_path, "preempt", slurm)
    subprocess.run(["scontrol", "requeue", job_id], env=slurm["env"], check=True)  # as preemption does
    wait_for(lambda: read_runs(exp_dir)[0]["status"] == SUCCESS, timeout=300, message="the requeued job to finish")
    runs = read_runs(exp_dir)
    assert len(runs) == 1 and runs[0]["attempts"] == 2 and runs[0]["job_id"] == job_id
    assert any("requeued by Slurm" in note for _, _, note in runs[0]["history"])
    assert len(starts(ledger)) == 2 and starts(ledger)[1] >= 3  # resumed, executed once at a time
    assert open(os.path.join(runs[0]["run_dir"], "steps.log")).read().split() == [str(i) for i in range(1, 301)]
    check = run_dbutils("preempt", root, "--check").stdout.splitlines()
    assert check[2].split() == ["all", "runs", "0", "0", "1", "0", "0", "1"]  # one run, one success


def test_a_run_stopped_at_its_time_limit_is_recorded_as_a_timeout(tmp_path, slurm):
    spec = write_spec(tmp_path, "late", args=["--value a"], **{"global": "--steps 1000 --sleep 0.5"})
    root, exp_dir = tmp_path / "runs", str(tmp_path / "runs" / "late")
    # --slurm_time 3: submitit's USR2 comes 90 s before the limit (Slurm may send it a minute early),
    # once the task has started the run
    options = [option if option != "10" else "3" for option in SLURM_OPTIONS]
    assert run_manager(spec, root, *options, env=slurm_env(slurm)).returncode == 0
    wait_for(lambda: read_runs(exp_dir)[0].get("failure") == "timeout", timeout=400,
             message="the run to reach its time limit")
    (run,) = read_runs(exp_dir)
    assert run["failure_detail"].startswith("timeout on Slurm") or "stopped from outside" in run["failure_detail"]
    assert f"failures by kind: timeout 1 ({run['run_id']})" in run_dbutils("late", root, "--check").stdout
