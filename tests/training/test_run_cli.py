"""``run.py`` end to end with the real data sets, models and estimators: a few steps of each
model family on CPU, the metric names each writes, and the refusals of bad options."""
import os
from pathlib import Path

import pytest

from ovis.records import read_metrics, read_outcome
from ovis.apps.train import main

DATA_ROOT = os.environ.get("OVIS_DATA") or str(Path(__file__).resolve().parents[3] / "shared" / "data")
COMMON = ["--exp", "cli", "--epochs", "1", "--eval_freq", "1", "--test_bs", "50", "--valid_bs", "100",
          "--max_eval", "100", "--iw_test", "20", "--iw_valid", "10", "--grad_samples", "4", "--grad_bs", "6",
          "--silent"]

RUNS = {
    "gmm": (["--dataset", "gmm", "--mini", "--N", "20", "--estimator", "ovis-S2-exclusive", "--iw", "5",
             "--bs", "500", "--grad_key", "phi"],
            ["test:gmm/posterior_distance", "test:gmm/prior_distance", "train:gmm/posterior_distance"]),
    "gaussian-toy": (["--dataset", "gaussian-toy", "--estimator", "pathwise-iwae", "--iw", "4", "--bs", "256",
                      "--grad_key", "A,b"],
                     ["train:gaussian_toy/distance_A", "train:gaussian_toy/distance_b", "test:gaussian_toy/distance_mu",
                      "test:gaussian_toy/distance_phi"]),
    "sbm": (["--dataset", "binmnist", "--mini", "--model", "sbm", "--N", "16", "--depth", "2", "--nlayers", "0",
             "--estimator", "vimco-arithmetic", "--iw", "3", "--bs", "500", "--mc_au_analysis", "5",
             "--npoints_au_analysis", "40", "--alpha_init", "0.9", "--warmup", "5"],
            ["train:active_units/au", "train:parameters/alpha"]),
    "vae": (["--dataset", "shapes", "--model", "vae", "--prior", "categorical", "--N", "4", "--K", "3",
             "--hdim", "16", "--nlayers", "1", "--estimator", "reinforce-baseline", "--iw", "2", "--mc", "2",
             "--bs", "235"], ["online:control_variate/mse", "online:loss/surrogate"]),
    "gaussian-vae": (["--dataset", "shapes", "--model", "gaussian-vae", "--N", "4", "--hdim", "16", "--depth", "2",
                      "--estimator", "tvo-part2-config1", "--iw", "3", "--bs", "235"], []),
}
SHARED_METRICS = ["train:loss/L_k", "train:loss/kl_q_p", "train:loss/ess", "train:grads/snr", "train:grads/variance",
                  "train:grads/dsnr", "train:snr/p50", "test:loss/L_k", "test:loss/overfitting", "valid:loss/L_k",
                  "online:loss/L_k"]


@pytest.mark.parametrize("family", sorted(RUNS))
def test_a_few_steps_of_each_model_family(tmp_path, family):
    options, own_metrics = RUNS[family]
    assert main(["--root", str(tmp_path), "--data_root", DATA_ROOT, "--run_id", family] + COMMON + options) == 0
    run_dir = tmp_path / "cli" / family
    assert read_outcome(str(run_dir)) == "success"
    metrics = read_metrics(str(run_dir))
    missing = [name for name in SHARED_METRICS + own_metrics if name not in set(metrics.metric)]
    assert not missing
    finite = metrics[metrics.metric.isin(["train:loss/L_k", "test:loss/L_k", "valid:loss/L_k"])].value
    assert finite.notna().all() and (finite < 0).all()
    images = {"prior-samples.png", "reconstructions.png"} & set(os.listdir(run_dir))
    assert bool(images) == (family in ("sbm", "vae", "gaussian-vae"))


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "ovis-foo"], "--estimator 'ovis-foo'"),
    (["--estimator", "stl", "--model", "sbm", "--dataset", "binmnist"], "--estimator stl with --model sbm"),
    (["--model", "conv-net", "--dataset", "binmnist"], "--model 'conv-net' is not one of vae"),
    (["--dataset", "cifar"], "--dataset 'cifar': unknown data set"),
    (["--dataset", "binmnist", "--data_root", "/nonexistent"], "--dataset binmnist:"),
    (["--dataset", "gmm", "--grad_key", "inference_network"],
     "--grad_key: param_filter 'inference_network' matches no trainable parameter"),
    (["--dataset", "shapes", "--model", "gmm"], "--model gmm only goes with --dataset gmm"),
])
def test_bad_choices_are_refused_before_any_work(tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.delenv("OVIS_DATA", raising=False)  # searched after --data_root: it would find the data
    monkeypatch.setenv("OVIS_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # no ./data
    argv = ["--root", str(tmp_path), "--data_root", DATA_ROOT] + argv
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert message in error and "run.py: error:" in error
    assert not (tmp_path / "sandbox").exists()
