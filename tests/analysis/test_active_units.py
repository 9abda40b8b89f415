"""Active units (Burda et al., 2016) on models whose posterior means are known."""
import pytest
import torch
from torch import nn
from torch.distributions import Normal

from ovis.analysis.active_units import ActiveUnits, active_units, posterior_means


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


def test_bad_inputs_are_refused():
    model = DeterministicLayers()
    with pytest.raises(ValueError, match="mc >= 1 and npoints >= 2"):
        active_units(model, [torch.zeros(4, 2)], mc=0, npoints=4)
    with pytest.raises(ValueError, match="at least 2 data points, the batches held 1"):
        active_units(model, [torch.zeros(1, 2)], mc=2, npoints=10)
    assert ActiveUnits(au=2, n=8, threshold=0.01, variances=torch.zeros(8)).r_au == 0.25
