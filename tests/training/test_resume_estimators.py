"""Estimators with state of their own (NVIL's baseline and running statistics, RELAX's eta,
temperature and surrogate network with their optimiser) resume exactly: a run stopped by
SIGTERM and resumed writes the records and the model of an unbroken run."""
import json
import os
import signal
from pathlib import Path

import pytest
import torch

from ovis.records import TIMING_METRICS, read_outcome
from ovis.apps.train import main
from ovis.training.components import build_components

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = os.environ.get("OVIS_DATA") or str(REPO.parent / "shared" / "data")
OPTIONS = ["--exp", "e", "--run_id", "r", "--dataset", "binmnist", "--mini", "--model", "sbm", "--N", "8",
           "--depth", "2", "--nlayers", "0", "--epochs", "2", "--bs", "250", "--eval_freq", "1", "--iw", "2",
           "--iw_test", "3", "--iw_valid", "3", "--max_eval", "40", "--test_bs", "40", "--valid_bs", "100",
           "--grad_samples", "0", "--silent", "--data_root", DATA_ROOT]


def stopping_at(call: int):
    """``build_components`` whose estimator sends this process SIGTERM at its ``call``-th training call."""
    def build(args, device):
        components = build_components(args, device)
        calls = []

        def count(module, inputs):
            if module.training:
                calls.append(1)
                if len(calls) == call:
                    os.kill(os.getpid(), signal.SIGTERM)
        components.estimator.register_forward_pre_hook(count)
        return components
    return build


def records(run_dir):
    with open(run_dir / "metrics.jsonl") as f:
        return [(r["step"], r["split"], {k: v for k, v in r["values"].items() if k not in TIMING_METRICS})
                for r in map(json.loads, f)]


@pytest.mark.parametrize("estimator_id", ["nvil", "relax"])
def test_a_stopped_and_resumed_run_equals_an_unbroken_one(tmp_path, estimator_id):
    options = OPTIONS + ["--estimator", estimator_id]
    assert main(["--root", str(tmp_path / "unbroken")] + options) == 0
    assert main(["--root", str(tmp_path / "broken")] + options, build=stopping_at(30)) == 130
    run_dir = tmp_path / "broken" / "e" / "r"
    assert read_outcome(str(run_dir)) == "aborted"
    assert main(["--root", str(tmp_path / "broken"), "--resume"] + options) == 0
    unbroken_dir = tmp_path / "unbroken" / "e" / "r"
    assert records(run_dir) == records(unbroken_dir)
    resumed, unbroken = (torch.load(d / "checkpoint.pt", weights_only=True) for d in (run_dir, unbroken_dir))
    for part in ("model", "estimator"):
        assert resumed[part].keys() == unbroken[part].keys() and resumed[part], part
        assert all(torch.equal(resumed[part][k], unbroken[part][k]) for k in unbroken[part]), part
