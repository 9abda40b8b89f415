"""A diverged run fails (exit code 1) with its last good checkpoint, its
one-line reason on stderr even with --silent, and its outcome in ``outcome.txt``."""
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ovis import exit_codes
from ovis.models import get_model
from ovis.records import LEGACY_OUTCOME_FILE, OUTCOME_FILE, read_outcome, write_outcome
from ovis.training.checkpoint import load_checkpoint
from ovis.launch import DivergenceError
from ovis.training.divergence import (KL_TOLERANCE, check_evaluation, check_parameters,
                                      likelihood_is_probability_mass)
from ovis.apps.train import main
from ovis.training.monitor import StepMonitor

from .test_trainer import run
from .toys import ToySBN

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = os.environ.get("OVIS_DATA") or str(REPO.parent / "shared" / "data")
HEALTHY = {"loss/L_k": -90.0, "loss/elbo": -95.0, "loss/kl_q_p": 5.0, "grads/snr": 0.4}


def test_run_py_with_a_huge_learning_rate_fails_keeping_the_last_good_checkpoint(tmp_path):
    """The issue's command, small: SBN, --lr 1e9, ovis-gamma1, --silent."""
    argv = [sys.executable, str(REPO / "run.py"), "--model", "sbm", "--lr", "1e9", "--estimator", "ovis-gamma1",
            "--dataset", "binmnist", "--mini", "--N", "8", "--depth", "2", "--nlayers", "0", "--iw", "5",
            "--bs", "500", "--epochs", "2", "--eval_freq", "1", "--max_eval", "50", "--iw_test", "10",
            "--grad_samples", "4", "--grad_bs", "4", "--silent", "--root", str(tmp_path), "--exp", "e",
            "--run_id", "r", "--data_root", DATA_ROOT]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == exit_codes.FAILED, result.stderr
    run_dir = tmp_path / "e" / "r"
    assert read_outcome(str(run_dir)) == "failed" and not (run_dir / LEGACY_OUTCOME_FILE).exists()
    reason = (run_dir / OUTCOME_FILE).read_text().splitlines()[0]
    assert reason.startswith("Failed. DivergenceError:") and "the checkpoint of step 0 is kept" in reason
    assert "a smaller --lr" in reason
    # --silent still prints the reason, on one line, without a traceback
    assert result.stderr.strip().splitlines() == [reason] and result.stdout == ""
    checkpoint = load_checkpoint(str(run_dir))
    assert checkpoint["state"]["step"] == 0
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values())


@pytest.mark.parametrize("values, probability_mass, reason", [
    (dict(HEALTHY, **{"grads/snr": math.nan}), False, "grads/snr = nan"),
    (dict(HEALTHY, **{"loss/L_k": -math.inf}), False, "loss/L_k = -inf"),
    (dict(HEALTHY, **{"loss/kl_q_p": -2 * KL_TOLERANCE}), False, "loss/kl_q_p = -0.02 < -0.01"),
    (dict(HEALTHY, **{"loss/L_k": 0.5}), True, "loss/L_k = 0.5 > 0 on data where p(x|z) is a probability mass"),
])
def test_non_finite_and_impossible_metrics_are_divergence(values, probability_mass, reason):
    with pytest.raises(DivergenceError, match=r"diverged at step 7 \(test metrics\): .*" + re.escape(reason)):
        check_evaluation(7, "test", values, probability_mass)


def test_healthy_metrics_and_positive_densities_pass():
    check_evaluation(7, "test", HEALTHY, probability_mass=True)
    check_evaluation(7, "test", dict(HEALTHY, **{"loss/kl_q_p": -KL_TOLERANCE / 2}), probability_mass=True)
    check_evaluation(7, "test", dict(HEALTHY, **{"loss/L_k": 12.0}), probability_mass=False)  # a density may exceed 1


def test_the_likelihood_kind_comes_from_the_model():
    x = torch.bernoulli(torch.full((2, 1, 3, 3), 0.5))
    assert likelihood_is_probability_mass(ToySBN((1, 3, 3)), x)
    toy = get_model("gaussian-toy", (20,), x_mean=torch.zeros(20))
    assert not likelihood_is_probability_mass(toy, torch.randn(2, 20))


def test_a_negative_kl_during_training_is_a_divergence():
    monitor = StepMonitor(torch.device("cpu"), window=4)
    monitor.record(1, torch.tensor(1.0), {"loss/L_k": torch.tensor([-3.0]), "loss/kl_q_p": torch.tensor([0.5])})
    monitor.record(2, torch.tensor(1.0), {"loss/L_k": torch.tensor([-3.0]), "loss/kl_q_p": torch.tensor([-9.0])})
    with pytest.raises(DivergenceError, match="impossible training loss at step 2 \\(loss/kl_q_p = -9 < -0.01"):
        monitor.sync()


def test_a_failure_prints_its_one_line_reason_even_when_silent(tmp_path, capsys):
    assert run(tmp_path, nan_after=14) == exit_codes.FAILED  # OPTIONS include --silent
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Failed. NonFiniteLossError: non-finite training loss at step 15")


def test_the_outcome_file_says_what_it_is_and_the_old_name_is_still_read(tmp_path):
    write_outcome(str(tmp_path), "success")
    assert os.listdir(tmp_path) == [OUTCOME_FILE] == ["outcome.txt"]
    old = tmp_path / "old"
    old.mkdir()
    (old / "success.txt").write_text("Failed. RuntimeError: boom\ntraceback")
    assert read_outcome(str(old)) == "failed"
    assert main(["--root", str(tmp_path), "--iw", "0"]) == exit_codes.BAD_ARGUMENTS  # refused: nothing written


def test_a_step_that_fails_on_non_finite_parameters_is_a_divergence():
    model = ToySBN((1, 3, 3))
    check_parameters(3, model)
    with torch.no_grad():
        model.inference_network.weight[0, 0] = math.nan
    with pytest.raises(DivergenceError, match=r"diverged at step 3: non-finite parameters \(inference_network.weight\)"):
        check_parameters(3, model)
