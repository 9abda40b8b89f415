"""``detach_parameters``: same density, gradient only through the value, for every kind of q."""
import pytest
import torch
from torch.distributions import (AffineTransform, Bernoulli, Categorical, Distribution, Independent, Normal,
                                 OneHotCategorical, RelaxedBernoulli, RelaxedOneHotCategorical,
                                 TransformedDistribution, constraints)

from ovis.estimators.distributions import detach_parameters


class ScaledLaplace(Distribution):
    """A custom distribution storing its parameters as attributes (location, log-scale)."""
    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    support = constraints.real

    def __init__(self, loc, log_scale):
        self.loc, self.log_scale = loc, log_scale
        super().__init__(loc.shape, validate_args=False)

    def log_prob(self, value):
        return -(value - self.loc).abs() / self.log_scale.exp() - self.log_scale - 0.6931471805599453


def cases():
    torch.manual_seed(0)
    a = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    temperature = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    return (a, b, temperature), [
        (Normal(a, b.exp()), lambda d: d.rsample()),
        (Independent(Normal(a, b.exp()), 1), lambda d: d.rsample()),
        (Bernoulli(logits=a), lambda d: d.sample()),
        (Bernoulli(probs=torch.sigmoid(b)), lambda d: d.sample()),
        (Independent(Bernoulli(logits=a), 1), lambda d: d.sample()),
        (Categorical(logits=a), lambda d: d.sample()),
        (OneHotCategorical(logits=a), lambda d: d.sample()),
        (RelaxedBernoulli(temperature, logits=a), lambda d: d.rsample()),
        (RelaxedOneHotCategorical(temperature, logits=a), lambda d: d.rsample()),
        (TransformedDistribution(Normal(a, 1.0), [AffineTransform(b, 2.0)]), lambda d: d.rsample()),
        (ScaledLaplace(a, b), lambda d: d.loc + d.log_scale.exp() * torch.randn_like(d.loc)),
    ]


@pytest.mark.parametrize("index", range(11))
def test_same_density_gradient_through_the_value_only(index):
    parameters, all_cases = cases()
    distribution, draw = all_cases[index]
    torch.manual_seed(1)
    value = draw(distribution)
    detached = detach_parameters(distribution)
    assert type(detached) is type(distribution)
    assert torch.allclose(detached.log_prob(value), distribution.log_prob(value))
    # no gradient reaches any parameter through the copy, other than through the value
    probe = value.detach().requires_grad_(value.is_floating_point())
    log_prob = detached.log_prob(probe).sum()
    if log_prob.requires_grad:  # (categorical log-probabilities of an index have no graph at all)
        assert all(g is None for g in torch.autograd.grad(log_prob, parameters, allow_unused=True))
    if probe.requires_grad and distribution.has_rsample or isinstance(distribution, ScaledLaplace):
        (value_grad,) = torch.autograd.grad(detached.log_prob(probe).sum(), probe)
        (expected,) = torch.autograd.grad(distribution.log_prob(probe).sum(), probe)
        assert torch.allclose(value_grad, expected)
    # the original still depends on its parameters
    assert any(g is not None for g in torch.autograd.grad(distribution.log_prob(value.detach()).sum(), parameters,
                                                          allow_unused=True))


def test_all_parameters_are_kept():
    """The original rebuilt q from its logits only and reset the Gaussian toy's scale."""
    loc, scale = torch.zeros(3, requires_grad=True), torch.full((3,), 2.0 / 3.0, requires_grad=True)
    detached = detach_parameters(Normal(loc, scale))
    assert torch.equal(detached.scale, scale.detach()) and torch.equal(detached.loc, loc.detach())


def test_rejects_other_objects():
    with pytest.raises(TypeError):
        detach_parameters(torch.zeros(3))
