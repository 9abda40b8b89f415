"""Failure kinds (out of memory, preempted, diverged, error) recorded, shown and selected by
``--requeue --kinds``; ``--fail_fast``. Real processes: a MemoryError under a small RLIMIT_AS, a
SIGTERM from outside the queue."""
import os
import signal
import subprocess
import sys

from ovis.queue.database import ABORTED, FAILED, QUEUED, SUCCESS
from ovis.queue.view import read_runs
from ovis.reporting.report import _run_listing
from ovis.reporting.runs import scan_experiment

from .helpers import ROOT, environment, run_dbutils, run_manager, start_manager, wait_for, write_spec


def test_failures_are_recorded_by_kind_shown_and_requeued_by_kind(tmp_path, stop_processes):
    spec = write_spec(tmp_path, "kinds", args=["--steps 200 --sleep 0.05", "--fail_at 1", "--exhaust_memory_at 1",
                                               "--fail_at 1 --fail_with DivergenceError", "--steps 2"],
                      **{"global": "--sleep 0.01"})
    root, exp_dir = tmp_path / "runs", str(tmp_path / "runs" / "kinds")
    manager = start_manager(spec, root, "--processes", "2", log_path=tmp_path / "m.log")
    stop_processes.append(manager)
    long_run = wait_for(lambda: os.path.exists(os.path.join(exp_dir, ".db.json")) and read_runs(exp_dir)[0].get("pid"),
                        message="the long run to start")
    wait_for(lambda: os.path.exists(os.path.join(read_runs(exp_dir)[0]["run_dir"], "steps.log")),
             message="the long run to make a step")
    os.kill(long_run, signal.SIGTERM)  # from outside the queue, as a preempting scheduler does
    assert manager.wait(timeout=120) == 1
    runs = read_runs(exp_dir)
    assert [r["status"] for r in runs] == [ABORTED, FAILED, FAILED, FAILED, SUCCESS]
    assert [r["failure"] for r in runs] == ["preempted", "error", "out_of_memory", "diverged", None]
    assert runs[1]["failure_detail"] == "RuntimeError: planned failure at step 1"
    assert runs[2]["failure_detail"] == "MemoryError"
    assert runs[3]["failure_detail"].startswith("DivergenceError: planned failure at step 1")

    check = run_dbutils("kinds", root, "--check").stdout
    assert (f"failures by kind: out_of_memory 1 ({runs[2]['run_id']}); preempted 1 ({runs[0]['run_id']}); "
            f"diverged 1 ({runs[3]['run_id']}); error 1 ({runs[1]['run_id']}) ('--requeue --kinds KIND,...' "
            f"requeues them)") in check
    assert "kind: out_of_memory: MemoryError" in run_dbutils("kinds", root, "--show_failed").stdout
    listing = _run_listing([r for r in scan_experiment(exp_dir).runs if r.status != SUCCESS])  # the report's
    assert f"| {runs[2]['run_id']} | failed (out_of_memory) |" in listing.replace("`", "")

    refused = subprocess.run([sys.executable, os.path.join(ROOT, "dbutils.py"), "--exp", "kinds", "--root", str(root),
                              "--requeue", "--kinds", "preempted,oom"], capture_output=True, text=True, cwd=ROOT,
                             env=environment())
    assert refused.returncode == 2 and "unknown failure kind(s) oom: expected a comma-separated list of " \
        "out_of_memory, timeout, preempted, diverged, error" in refused.stderr
    requeued = run_dbutils("kinds", root, "--requeue", "--kinds", "preempted,out_of_memory")
    assert "requeued 2 run(s) (1 aborted, 1 failed)" in requeued.stdout, requeued.stdout
    assert [r["status"] for r in read_runs(exp_dir)] == [QUEUED, FAILED, QUEUED, FAILED, SUCCESS]


def test_fail_fast_stops_dispatching_at_the_first_error_and_keeps_runs_in_flight(tmp_path):
    spec = write_spec(tmp_path, "fast", args=["--fail_at 0", "--steps 30 --sleep 0.1", "--steps 1", "--steps 2"])
    root, exp_dir = tmp_path / "runs", str(tmp_path / "runs" / "fast")
    result = run_manager(spec, root, "--processes", "2", "--fail_fast")
    assert result.returncode == 1
    assert "--fail_fast: " in result.stdout and "failed with an error; no new run starts" in result.stdout
    runs = read_runs(exp_dir)
    assert [r["status"] for r in runs] == [FAILED, SUCCESS, QUEUED, QUEUED]  # the run in flight finished
    assert len(open(os.path.join(runs[1]["run_dir"], "steps.log")).read().split()) == 30
