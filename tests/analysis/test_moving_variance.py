"""``--grad_variance_mode moving``: the REBAR code's gradient variance (moving averages of each
estimator's gradient and squared gradient, around the estimators' common mean), against a hand
computation; the tracker reads the training estimator's gradient and trains the others' control
variates along the trajectory; a short run.py run logs it without changing the trajectory."""
import os
from pathlib import Path

import pytest
import torch

from ovis.analysis.grad_variance import MovingGradientMoments, MovingVarianceTracker
from ovis.records import read_metrics
from ovis.testing import EnumerableModel
from ovis.apps.train import main

# two estimators, two coordinates, two steps, decay 1/2
GRADIENTS = [{"a": [1.0, 2.0], "b": [3.0, 0.0]}, {"a": [-1.0, 0.0], "b": [1.0, 4.0]}]
# by hand: after two steps m_a = (-0.25, 0.5), s_a = (0.75, 1), m_b = (1.25, 2), s_b = (2.75, 8);
# mu = (0.5, 1.25); mean(s - mu^2): a (0.5 - 0.5625) / 2, b (2.5 + 6.4375) / 2
EXPECTED = {"grad_moving_variance/a": -0.03125, "grad_moving_variance/b": 4.46875}


class OwnMeanMoments(MovingGradientMoments):
    """Broken: each estimator's variance around its own moving mean instead of the common one."""

    def update(self, gradients):
        values = super().update(gradients)
        return {key: (self.second[i] - self.first[i].square()).mean() for key, i in zip(values, self.ids)}


def _replay(moments: MovingGradientMoments):
    values = None
    for step in GRADIENTS:
        values = moments.update({key: torch.tensor(value) for key, value in step.items()})
    return {key: value.item() for key, value in values.items()}


def _matches_hand_computation(moments: MovingGradientMoments) -> bool:
    values = _replay(moments)
    return values.keys() == EXPECTED.keys() and all(abs(values[k] - EXPECTED[k]) < 1e-6 for k in EXPECTED)


def test_moving_variance_matches_the_hand_computation_and_a_broken_variant_does_not():
    assert _matches_hand_computation(MovingGradientMoments(["a", "b"], decay=0.5))
    assert not _matches_hand_computation(OwnMeanMoments(["a", "b"], decay=0.5))


def test_tracker_reads_the_training_gradient_and_trains_the_other_control_variates():
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=0)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]]).expand(8, -1)
    tracker = MovingVarianceTracker(["reinforce", "dynamic-rebar"], mc=1, iw=1, x_shape=(4,),
                                    training={"reinforce": object()}, model=model, param_filter="inference_network",
                                    decay=0.5)
    for p in tracker.parameters:
        p.grad = torch.full_like(p, 2.0)
    eta = tracker.estimator("dynamic-rebar", model).eta.item()
    values = tracker.step(model, x)
    assert set(values) == {"grad_moving_variance/reinforce", "grad_moving_variance/dynamic-rebar"}
    assert torch.equal(tracker.moments.first["reinforce"], torch.ones(sum(p.numel() for p in tracker.parameters)))
    assert tracker.estimators["dynamic-rebar"].eta.item() != eta  # trained by its variance objective
    assert all(torch.equal(p.grad, torch.full_like(p, 2.0)) for p in tracker.parameters)  # .grad left as it was


DATA_ROOT = os.environ.get("OVIS_DATA") or str(Path(__file__).resolve().parents[3] / "shared" / "data")
TINY = ["--dataset", "binmnist", "--mini", "--model", "sbm", "--N", "8", "--depth", "2", "--nlayers", "0",
        "--exp", "e", "--nsteps", "20", "--epochs", "-1", "--bs", "250", "--threads", "1", "--eval_freq", "1",
        "--max_eval", "20", "--iw_test", "2", "--iw_valid", "2", "--grad_samples", "0", "--mc_au_analysis", "0",
        "--estimator", "nvil", "--iw", "1", "--silent", "--data_root", DATA_ROOT]


@pytest.mark.skipif(not os.path.isfile(os.path.join(DATA_ROOT, "binarized_mnist.npz")), reason="no binarized MNIST")
def test_a_run_logs_the_moving_variance_and_keeps_its_trajectory(tmp_path):
    tracked = ["--track_grad_variances", "nvil,muprop", "--grad_variance_mode", "moving",
               "--grad_key", "inference_network,generative_model"]
    for run_id, extra in (("plain", []), ("tracked", tracked)):
        assert main(TINY + ["--root", str(tmp_path), "--run_id", run_id] + extra) == 0
    plain, tracked = (read_metrics(str(tmp_path / "e" / run_id)) for run_id in ("plain", "tracked"))
    assert {"online:grad_moving_variance/nvil", "online:grad_moving_variance/muprop"} <= set(tracked.metric)
    assert (tracked[tracked.metric.str.startswith("online:grad_moving")].value > 0).all()
    bound = "test:loss/L_k"
    assert plain[plain.metric == bound].value.tolist() == tracked[tracked.metric == bound].value.tolist()
