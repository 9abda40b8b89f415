"""A run killed with SIGKILL and resumed produces the same records and model as an unbroken run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from ovis.records import TIMING_METRICS, read_outcome
from ovis.training.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("toy_run.py")
OPTIONS = ["--exp", "e", "--run_id", "r", "--epochs", "8", "--eval_freq", "2", "--bs", "8", "--iw", "3",
           "--grad_samples", "6", "--grad_bs", "4", "--test_bs", "8", "--iw_test", "10", "--iw_valid", "10",
           "--max_eval", "16", "--silent", "--deterministic"]


def launch(root, *extra, delay="0"):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               TOY_STEP_DELAY=delay)
    return subprocess.Popen([sys.executable, str(SCRIPT), "--root", str(root)] + OPTIONS + list(extra), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def records(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [(r["step"], r["split"], {k: v for k, v in r["values"].items() if k not in TIMING_METRICS})
                for r in map(json.loads, f)]


def checkpoint_step(run_dir):
    try:
        checkpoint = load_checkpoint(str(run_dir))
    except Exception:  # not written yet
        return None
    return None if checkpoint is None else checkpoint["state"]["step"]


def test_sigkill_after_an_evaluation_then_resume_equals_an_unbroken_run(tmp_path):
    unbroken = launch(tmp_path / "unbroken")
    killed = launch(tmp_path / "killed", delay="0.02")
    run_dir = tmp_path / "killed" / "e" / "r"
    deadline = time.monotonic() + 120
    while (checkpoint_step(run_dir) or 0) < 12:  # the checkpoint after the evaluation at epoch 2
        assert killed.poll() is None, f"the run ended before it could be killed: {killed.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint after the second evaluation"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL
    assert read_outcome(str(run_dir)) is None  # a killed run leaves no outcome marker
    killed_at = checkpoint_step(run_dir)
    assert 12 <= killed_at < 48

    resumed = launch(tmp_path / "killed", "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    assert unbroken.wait() == 0, unbroken.stderr.read()
    unbroken_dir = tmp_path / "unbroken" / "e" / "r"
    assert read_outcome(str(run_dir)) == "success"
    assert records(run_dir) == records(unbroken_dir)
    assert [r[0] for r in records(run_dir) if r[1] == "test"] == [0, 12, 24, 36, 48]
    resumed_model = torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]
    unbroken_model = torch.load(unbroken_dir / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(resumed_model[key], unbroken_model[key]) for key in unbroken_model)
    assert "resuming at step" in (run_dir / "run.log").read_text()


def test_repeated_sigterms_while_stopping_do_not_cost_the_checkpoint(tmp_path):
    """A killed manager's run gets one SIGTERM per exiting manager thread (PR_SET_PDEATHSIG): the
    later ones must not abort the checkpoint that the first one asked for."""
    run = launch(tmp_path, "--epochs", "1000", delay="0.3")
    run_dir = tmp_path / "e" / "r"
    log = lambda: (run_dir / "run.log").read_text() if (run_dir / "run.log").exists() else ""  # noqa: E731
    deadline = time.monotonic() + 120
    while checkpoint_step(run_dir) is None or "step" not in log():
        assert run.poll() is None and time.monotonic() < deadline, run.stderr.read() if run.poll() else "no start"
        time.sleep(0.05)
    run.send_signal(signal.SIGTERM)
    while "SIGTERM received: stopping after the current step" not in log():
        assert run.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    for _ in range(3):  # while the step (0.3 s) and its checkpoint are still under way
        run.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    assert run.wait(timeout=120) == 130, run.stderr.read()
    outcome = (run_dir / "outcome.txt").read_text()
    assert read_outcome(str(run_dir)) == "aborted" and "the checkpoint of this step is saved" in outcome, outcome
    assert f"stopped at step {checkpoint_step(run_dir)} " in outcome
    assert "SIGTERM received again: ignored" in log()
    assert not [name for name in os.listdir(run_dir) if name.endswith(".tmp")]
