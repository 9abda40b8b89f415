"""The run-folder life cycle every launched script runs in (``ovis.run_folder``): refuse or resume,
``config.json``, the logger, signals, the outcome marker and the exit codes."""
import argparse
import ast
import json
import os
import signal

import pytest

from ovis import exit_codes, records
from ovis.run_folder import StopRequests, close_logger, run_logger, run_script, run_work

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def options(**changes) -> argparse.Namespace:
    return argparse.Namespace(**{"resume": False, "rf": False, "silent": True, "lr": 0.1, **changes})


def launch(run_dir, args, work, results=lambda folder: "", setup=lambda: None):
    def body(built, resume, logger):
        return run_work(run_dir, lambda: work(resume), logger, StopRequests(logger))
    return run_script("script.py", args, run_dir, results, setup, body)


def test_a_fresh_run_writes_config_log_and_success(tmp_path):
    run_dir = str(tmp_path / "run")
    os.makedirs(run_dir)
    for name in ("process.log", "stale.csv"):
        (tmp_path / "run" / name).write_text("old")
    resumed = []
    assert launch(run_dir, options(), resumed.append) == exit_codes.SUCCESS
    assert resumed == [False] and records.read_outcome(run_dir) == records.SUCCESS
    assert sorted(os.listdir(run_dir)) == ["config.json", "outcome.txt", "process.log", "run.log"]  # queue's file kept
    config = json.load(open(os.path.join(run_dir, "config.json")))
    assert config["lr"] == 0.1 and config["script"] == "script.py" and config["run_id"] == "run" and config["hash"]


def test_results_are_refused_without_resume_or_rf_and_resumed_with_the_same_options(tmp_path, capsys):
    run_dir = str(tmp_path / "run")
    results = lambda folder: "rows" if os.path.exists(os.path.join(folder, "rows.csv")) else ""  # noqa: E731
    assert launch(run_dir, options(), lambda resume: open(os.path.join(run_dir, "rows.csv"), "w").close()) == 0
    assert launch(run_dir, options(), lambda resume: None, results) == exit_codes.BAD_ARGUMENTS
    assert "already holds rows: pass --resume to continue it or --rf" in capsys.readouterr().err
    assert launch(run_dir, options(resume=True, lr=0.2), lambda resume: None, results) == exit_codes.BAD_ARGUMENTS
    assert "other options (changed: lr)" in capsys.readouterr().err
    assert os.path.exists(os.path.join(run_dir, "rows.csv"))  # nothing touched by a refusal
    resumed = []
    assert launch(run_dir, options(resume=True), resumed.append, results) == 0 and resumed == [True]
    assert launch(run_dir, options(rf=True), resumed.append, results) == 0 and resumed == [True, False]
    assert not os.path.exists(os.path.join(run_dir, "rows.csv"))


def test_a_bad_option_found_by_the_set_up_leaves_no_folder(tmp_path, capsys):
    def setup():
        raise ValueError("--lr 0.1: too large")
    assert launch(str(tmp_path / "run"), options(), lambda resume: None, setup=setup) == exit_codes.BAD_ARGUMENTS
    assert capsys.readouterr().err == "script.py: error: --lr 0.1: too large\n" and not os.listdir(tmp_path)


def test_a_failure_writes_its_message_and_traceback(tmp_path):
    def work(resume):
        raise RuntimeError("no estimator could train the given models")
    run_dir = str(tmp_path / "run")
    assert launch(run_dir, options(), work) == exit_codes.FAILED
    marker = open(records.outcome_path(run_dir)).read()
    assert marker.startswith("Failed. RuntimeError: no estimator could train the given models\nTraceback")
    assert "Failed. RuntimeError" in open(os.path.join(run_dir, "run.log")).read()


@pytest.mark.parametrize("at_once", [False, True])
def test_a_signal_stops_at_the_next_safe_point_or_at_once(tmp_path, at_once):
    run_dir = str(tmp_path)
    logger = run_logger(run_dir, silent=True)
    stop = StopRequests(logger, at_once=at_once)
    done = []

    def work():
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("after the signal")  # the rest of the step
        stop.check("after step 1")

    before = signal.getsignal(signal.SIGTERM)
    try:
        assert run_work(run_dir, work, logger, stop) == exit_codes.ABORTED
    finally:
        close_logger(logger)
    assert done == ([] if at_once else ["after the signal"])
    assert records.read_outcome(run_dir) == records.ABORTED
    assert signal.getsignal(signal.SIGTERM) == before  # the handlers are restored


def test_every_launched_script_runs_in_the_one_life_cycle():
    """The command lines of the scripts that write a run folder call ``run_script``; none installs
    its own signal handlers or writes its own outcome marker."""
    for name in ("train", "asymptotic", "efficiency"):
        path = os.path.join(ROOT, "ovis", "apps", f"{name}.py")
        calls = {getattr(node.func, "id", getattr(node.func, "attr", None))
                 for node in ast.walk(ast.parse(open(path).read())) if isinstance(node, ast.Call)}
        assert "run_script" in calls and not calls & {"signal", "write_outcome", "FileHandler"}, name
