"""The queue with the real run.py: tiny Gaussian-toy runs, end to end."""
import json
import os
import signal

import pytest

from ovis import records
from ovis.queue.database import SUCCESS
from ovis.queue.view import read_runs

from .helpers import run_manager, start_manager, wait_for, write_spec

TOY = ("--dataset gaussian-toy --bs 100 --mc 1 --iw 5 --grad_samples 0 --iw_test 20 --iw_valid 20 "
       "--test_bs 256 --valid_bs 256 --max_eval 256 --silent")


def metric_steps(run_dir: str, split: str) -> list:
    return [r["step"] for r in records.iter_metric_records(run_dir) if r["split"] == split]


def test_manager_runs_run_py_and_the_run_folder_matches_the_queue(tmp_path):
    spec = write_spec(tmp_path, "toy", script="run.py", args=["--estimator ovis-gamma1", "--estimator vimco-arithmetic"],
                      parameters={"seed": [1]}, **{"global": f"{TOY} --epochs 2 --eval_freq 1"})
    root = tmp_path / "runs"
    result = run_manager(spec, root, "--processes", "2", "--data_root", str(tmp_path / "data"), timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    runs = read_runs(str(root / "toy"))
    assert [r["status"] for r in runs] == [SUCCESS, SUCCESS]
    for run in runs:
        assert run["run_dir"] == os.path.join(str(root), "toy", run["run_id"])
        assert records.read_outcome(run["run_dir"]) == records.SUCCESS
        config = records.read_config(run["run_dir"])
        assert config["run_id"] == run["run_id"] and config["exp"] == "toy"
        assert config["estimator"] == run["params"]["estimator"] and config["iw"] == 5
        assert config["root"] == str(root) and config["data_root"] == str(tmp_path / "data")
        assert metric_steps(run["run_dir"], "test") == [0, 11, 22]  # 11 steps per epoch, evaluated each epoch
        assert os.path.exists(os.path.join(run["run_dir"], "process.log"))


@pytest.mark.slow
def test_sigkilled_manager_run_py_resumes_from_its_checkpoint(tmp_path, stop_processes):
    spec = write_spec(tmp_path, "toykill", script="run.py", args=["--estimator ovis-gamma1"],
                      parameters={"seed": [1]}, **{"global": f"{TOY} --epochs 100 --eval_freq 10"})
    root, exp_dir = tmp_path / "runs", str(tmp_path / "runs" / "toykill")
    manager = start_manager(spec, root, log_path=tmp_path / "m1.log")
    stop_processes.append(manager)
    run_dir = lambda: read_runs(exp_dir)[0]["run_dir"]  # noqa: E731
    wait_for(lambda: os.path.exists(os.path.join(exp_dir, ".db.json")) and len(metric_steps(run_dir(), "test")) >= 2,
             timeout=300, message="two evaluations")
    manager.send_signal(signal.SIGKILL)
    manager.wait()
    wait_for(lambda: records.read_outcome(run_dir()) == records.ABORTED, timeout=120,
             message="run.py to checkpoint after its manager died")
    result = run_manager(spec, root, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    (run,) = read_runs(exp_dir)
    assert run["status"] == SUCCESS and run["attempts"] == 2
    with open(os.path.join(run["run_dir"], "run.log")) as f:
        assert "resuming" in f.read()
    steps = metric_steps(run["run_dir"], "test")
    assert steps == sorted(set(steps)) and steps[-1] == 100 * 11
    assert json.load(open(os.path.join(run["run_dir"], "config.json")))["run_id"] == run["run_id"]
