"""Active units (Burda et al., 2016) on models whose posterior means are known."""
import pytest
import torch
from torch import nn
from torch.distributions import Normal

from ovis.analysis.active_units import ActiveUnits, RunningVariance, active_units, posterior_means
from ovis.models import get_model


class DeterministicLayers(nn.Module):
    """Two latent layers with z = f(x) exactly (a point-mass q): E_q[z|x] = f(x)."""

    def __init__(self):
        super().__init__()
        self.A = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.5, -0.5]])  # unit 1 ignores x
        self.calls = []

    def forward(self, x, reparam=False, **kwargs):
        self.calls.append(x.shape[0])
        top = torch.tanh(x @ self.A.T)  # [rows, 3]
        bottom = torch.stack([x[:, 0] ** 2, torch.ones_like(x[:, 0])], dim=1).view(-1, 2, 1)  # [rows, 2, 1]
        return {"z": [top, bottom]}


class GaussianPosterior(nn.Module):
    """q(z|x) = N(a x, s^2) per unit: Cov_x(MC mean) = a^2 Var(x) + s^2 / mc."""

    def __init__(self, a, s):
        super().__init__()
        self.a, self.s = a, s

    def forward(self, x, reparam=False, **kwargs):
        return {"z": [Normal(x * self.a, self.s).sample()]}


def test_exact_variances_of_deterministic_posterior_means():
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    result = active_units(DeterministicLayers(), torch.split(x, 7), mc=3, npoints=40)
    means = torch.cat([torch.tanh(x @ DeterministicLayers().A.T), x[:, :1] ** 2, torch.ones(40, 1)], 1).double()
    assert torch.allclose(result.variances, means.var(0), rtol=1e-12, atol=1e-15)
    assert result.n == 5 and result.au == 3  # unit 1 of the top layer and the constant unit are inactive
    assert result.summary == {"active_units/au": 3.0, "active_units/r_au": 0.6, "active_units/n": 5.0}


def test_only_the_first_npoints_are_used_and_chunks_do_not_change_the_result():
    x = torch.randn(30, 2, generator=torch.Generator().manual_seed(1))
    model = DeterministicLayers()
    result = active_units(model, torch.split(x, 10), mc=4, npoints=15, max_rows=6)
    assert max(model.calls) <= 6 and sum(model.calls) == 15 * 4
    reference = active_units(DeterministicLayers(), [x[:15]], mc=4, npoints=15)
    assert torch.allclose(result.variances, reference.variances, rtol=1e-12)


def test_threshold_separates_noise_from_signal():
    torch.manual_seed(2)
    x = torch.randn(400, 1).expand(400, 3)  # Var(x) = 1
    model = GaussianPosterior(a=torch.tensor([1.0, 0.0, 0.0]), s=torch.tensor([0.5, 0.5, 0.05]))
    result = active_units(model, torch.split(x, 50), mc=50, npoints=400)
    # expected variances 1 + 0.005, 0.005 and 5e-5: only the first unit exceeds Burda's 1e-2
    assert result.variances.tolist() == pytest.approx([1.005, 0.005, 5e-5], rel=0.2)
    assert result.au == 1 and result.threshold == 1e-2
    # the original code's 1e-3 counts the noise of unit 2 as activity
    assert active_units(model, torch.split(x, 50), mc=50, npoints=400, threshold=1e-3).au == 2


def test_posterior_means_average_the_monte_carlo_copies():
    torch.manual_seed(3)
    x = torch.full((2, 1), 3.0)
    means = posterior_means(GaussianPosterior(a=torch.ones(1), s=torch.ones(1)), x, mc=20000, max_rows=5000)
    assert means.shape == (2, 1) and torch.allclose(means, torch.full((2, 1), 3.0, dtype=torch.float64), atol=0.04)


def _small_sbn():
    """A 2 x 3 SBN whose posterior means move with the data (inference weights scaled up)."""
    torch.manual_seed(4)
    model = get_model("sbm", x_shape=(1, 4, 4), N=3, depth=2)
    with torch.no_grad():
        for parameter in model.inference_network.parameters():
            parameter.mul_(10)
    return model


def _batch_computation(model, x, mc):
    """The unstreamed computation: every [points * mc] row in one forward pass, then the
    variance over points of the per-point means."""
    z = model(x.repeat_interleave(mc, dim=0))["z"]
    samples = torch.cat([layer.reshape(x.shape[0], mc, -1) for layer in z], dim=2).double()  # [points, mc, units]
    return samples.mean(1).var(0)  # [units]


def test_streaming_equals_the_batch_computation_on_a_small_sbn():
    model, mc = _small_sbn(), 50
    x = (torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    torch.manual_seed(6)
    reference = _batch_computation(model, x, mc)
    torch.manual_seed(6)  # the same particles: one forward pass of all 12 x 50 rows
    streamed = active_units(model, [x], mc=mc, npoints=12, max_rows=12 * mc)
    assert streamed.n == 6
    torch.testing.assert_close(streamed.variances, reference, rtol=1e-12, atol=1e-15)


def test_streaming_in_small_chunks_agrees_with_the_batch_computation():
    """Chunks draw other particles: the results agree up to the Monte-Carlo error of the means."""
    model, mc = _small_sbn(), 4000
    x = (torch.rand(12, 1, 4, 4, generator=torch.Generator().manual_seed(5)) < 0.5).float()
    torch.manual_seed(7)
    reference = _batch_computation(model, x, mc)
    calls = []
    model.register_forward_hook(lambda module, args, output: calls.append(args[0].shape[0]))
    streamed = active_units(model, torch.split(x, 5), mc=mc, npoints=12, max_rows=1000)
    assert max(calls) <= 1000 and sum(calls) == 12 * mc
    # per-point means have a standard error <= 0.5 / sqrt(4000) ~ 0.008: variances over the 12
    # points of means with a spread of ~0.25 differ by ~2 x 0.25 x 0.008 / sqrt(12) ~ 0.001
    assert reference.max() > 0.05  # the comparison is not between zeros
    torch.testing.assert_close(streamed.variances, reference, rtol=0, atol=0.005)


def test_running_variance_equals_the_variance_of_all_rows():
    rows = torch.randn(37, 5, generator=torch.Generator().manual_seed(8), dtype=torch.float64) * 3 + 100
    moments = RunningVariance()
    for batch in torch.split(rows, [1, 10, 2, 24]):
        moments.add(batch)
    assert moments.count == 37
    torch.testing.assert_close(moments.mean, rows.mean(0), rtol=1e-14, atol=0)
    torch.testing.assert_close(moments.variance, rows.var(0), rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="at least 2 rows"):
        RunningVariance().variance


def test_bad_inputs_are_refused():
    model = DeterministicLayers()
    with pytest.raises(ValueError, match="mc >= 1 and npoints >= 2"):
        active_units(model, [torch.zeros(4, 2)], mc=0, npoints=4)
    with pytest.raises(ValueError, match="at least 2 data points, the batches held 1"):
        active_units(model, [torch.zeros(1, 2)], mc=2, npoints=10)
    assert ActiveUnits(au=2, n=8, threshold=0.01, variances=torch.zeros(8)).r_au == 0.25
