"""``--track_grad_variances``: the gradient log-variance of several estimators at the same parameters
and batch, and short run.py runs of the REBAR-family estimators on binarized MNIST."""
import math
import os
import runpy
from pathlib import Path

import pytest
import torch

from ovis.analysis.grad_variance import GradientVarianceTracker, parse_tracked_ids
from ovis.testing import EnumerableModel
from ovis.records import read_metrics, read_outcome
from ovis.apps.train import main

DATA_ROOT = os.environ.get("OVIS_DATA") or str(Path(__file__).resolve().parents[3] / "shared" / "data")
HAS_BINMNIST = os.path.isfile(os.path.join(DATA_ROOT, "binarized_mnist.npz"))
TINY = ["--dataset", "binmnist", "--mini", "--model", "sbm", "--N", "8", "--depth", "2", "--nlayers", "0",
        "--exp", "rebar", "--epochs", "1", "--bs", "100", "--threads", "1", "--eval_freq", "1", "--test_bs", "100", "--valid_bs", "100",
        "--max_eval", "100", "--iw_test", "5", "--iw_valid", "5", "--grad_samples", "4", "--grad_bs", "5", "--silent"]


@pytest.fixture(autouse=True)
def single_thread():
    """Tiny tensors: intra-op threads only add synchronisation."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_tracker_measures_each_estimator_on_the_same_batch_and_orders_them():
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=0)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).expand(8, -1)
    tracker = GradientVarianceTracker(["reinforce", "vimco-arithmetic", "disarm-iw"], mc=1, iw=4, x_shape=(4,))
    values = tracker(model, x, 100, "inference_network")
    assert set(values) == {"grad_log_variance/reinforce", "grad_log_variance/vimco-arithmetic",
                           "grad_log_variance/disarm-iw"}
    assert all(math.isfinite(v) for v in values.values())
    assert values["grad_log_variance/reinforce"] > values["grad_log_variance/vimco-arithmetic"] + 0.5
    assert all(p.grad is None for p in model.parameters())  # the model is measured, not trained


def test_learned_control_variates_adapt_before_measuring_and_the_training_estimator_is_reused():
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=0)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).expand(8, -1)
    training = parse_tracked_ids("rebar")
    shared = {"rebar": object()}
    tracker = GradientVarianceTracker(["dynamic-rebar"] + training, mc=1, iw=1, x_shape=(4,), training=shared,
                                      adapt_steps=5)
    assert tracker.estimator("rebar", model) is shared["rebar"]
    estimator = tracker.estimator("dynamic-rebar", model)
    eta = estimator.eta.item()
    tracker.adapt(estimator, model, x)
    assert estimator.eta.item() != eta and all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("text,message", [("nvil,nonsense", "nonsense"), ("rebar,rebar", "twice"),
                                          ("ovis-gamma1", "iw >= 2")])
def test_bad_tracked_ids_are_refused_with_what_to_do(text, message):
    with pytest.raises(ValueError, match=message):
        parse_tracked_ids(text)


@pytest.mark.skipif(not HAS_BINMNIST, reason="binarized_mnist.npz not in $OVIS_DATA")
@pytest.mark.parametrize("estimator_id,iw", [("disarm-iw", 3), ("dynamic-rebar", 1), ("muprop", 1), ("nvil", 1)])
def test_rebar_family_estimators_train_an_sbn_on_binarized_mnist(tmp_path, estimator_id, iw):
    track = ["--track_grad_variances", "rebar,disarm"] if estimator_id == "muprop" else []
    assert main(TINY + ["--root", str(tmp_path), "--data_root", DATA_ROOT, "--run_id", "r", "--estimator",
                        estimator_id, "--iw", str(iw)] + track) == 0
    run_dir = str(tmp_path / "rebar" / "r")
    assert read_outcome(run_dir) == "success"
    metrics = read_metrics(run_dir)
    final = metrics[metrics.metric == "test:loss/L_k"].sort_values("step").value.tolist()
    assert len(final) == 2 and all(math.isfinite(v) for v in final) and final[-1] > final[0]
    if track:
        assert {"train:grad_log_variance/rebar", "train:grad_log_variance/disarm"} <= set(metrics.metric)
        figure_script = runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "rebar_comparison_figure.py"))
        figure_script["main"](["--root", str(tmp_path), "--exp", "rebar", "--output", str(tmp_path / "reports")])
        table = (tmp_path / "reports" / "rebar" / "grad-log-variances.md").read_text()
        assert "| rebar |" in table and "| disarm |" in table and "muprop trains" in table
        assert (tmp_path / "reports" / "rebar" / "grad-log-variances.png").stat().st_size > 1000


REBAR_FAMILY_IDS = ["nvil", "reinforce-loo", "muprop", "simple-muprop", "rebar", "dynamic-rebar", "relax", "arm", "disarm",
                "disarm-iw", "gumbel-softmax", "concrete-tau0.3", "straight-through"]


@pytest.mark.slow
@pytest.mark.skipif(not HAS_BINMNIST, reason="binarized_mnist.npz not in $OVIS_DATA")
@pytest.mark.parametrize("estimator_id", REBAR_FAMILY_IDS)
@pytest.mark.parametrize("depth,nlayers", [(1, 2), (2, 0)])
def test_every_rebar_family_estimator_trains_one_and_two_layer_sbns(tmp_path, estimator_id, depth, nlayers):
    options = TINY + ["--root", str(tmp_path), "--data_root", DATA_ROOT, "--run_id", "r", "--estimator", estimator_id,
                      "--mc", "2" if estimator_id == "reinforce-loo" else "1", "--iw", "2"]
    options[options.index("--depth") + 1], options[options.index("--nlayers") + 1] = str(depth), str(nlayers)
    assert main(options + ["--hdim", "16"]) == 0
    metrics = read_metrics(str(tmp_path / "rebar" / "r"))
    final = metrics[metrics.metric == "test:loss/L_k"].sort_values("step").value.tolist()
    assert all(math.isfinite(v) for v in final) and final[-1] > final[0]


@pytest.mark.skipif(not HAS_BINMNIST, reason="binarized_mnist.npz not in $OVIS_DATA")
def test_run_refuses_a_bad_tracked_id_before_any_work(tmp_path, capsys):
    code = main(TINY + ["--root", str(tmp_path), "--data_root", DATA_ROOT, "--run_id", "r", "--estimator", "rebar",
                        "--track_grad_variances", "rebar,arm-typo"])
    assert code == 2 and "arm-typo" in capsys.readouterr().err
    assert not (tmp_path / "rebar" / "r").exists()


def test_the_estimators_since_2020_are_tracked_and_the_exact_gradient_has_the_lowest_variance():
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=4, z_dims=(3,), seed=0)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).expand(8, -1)
    ids = ["reinforce-loo", "arms", "arms-gaussian", "double-cv", "rodeo", "indecater", "unordered-set", "exact"]
    values = GradientVarianceTracker(ids, mc=4, iw=1, x_shape=(4,))(model, x, 50, "inference_network")
    assert set(values) == {f"grad_log_variance/{estimator_id}" for estimator_id in ids}
    sampled = [values[f"grad_log_variance/{estimator_id}"] for estimator_id in ids[:-1]]
    assert all(math.isfinite(v) for v in sampled)
    assert values["grad_log_variance/exact"] < min(sampled) - 5  # zero up to rounding
