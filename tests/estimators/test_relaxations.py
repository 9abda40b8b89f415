"""The estimators' samplers and relaxations of uniform noise (docs/DESIGN.md, section 1b)."""
import pytest
import torch
from torch.distributions import Bernoulli, Normal

from ovis.estimators.relaxations import NoiseSampler, hard_bernoulli, relaxed_bernoulli
from ovis.models import get_model

X_SHAPE = (1, 4, 4)


def binary_batch(n):
    return (torch.rand(n, *X_SHAPE, generator=torch.Generator().manual_seed(3)) > 0.5).float()


def test_hard_bernoulli_draws_q_exactly_and_its_antithetic_twin_too():
    logits = torch.tensor([-2.0, 0.0, 1.5])
    u = torch.rand(200_000, 3, generator=torch.Generator().manual_seed(0))
    p = torch.sigmoid(logits)
    standard_error = (p * (1 - p) / u.shape[0]).sqrt()
    for noise in (u, 1 - u):
        frequency = hard_bernoulli(logits.expand_as(noise), noise).mean(0)
        assert ((frequency - p).abs() < 5 * standard_error).all()
    # the pair is antithetic: where both logit(u) and logit(1 - u) fall on the same side, they agree
    both = hard_bernoulli(logits.expand_as(u), u) + hard_bernoulli(logits.expand_as(u), 1 - u)
    assert set(both.unique().tolist()) <= {0.0, 1.0, 2.0}


def test_relaxed_bernoulli_tends_to_the_hard_sample_as_tau_falls():
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(1))
    u = torch.rand(1000, generator=torch.Generator().manual_seed(2))
    hard = hard_bernoulli(logits, u)
    gaps = [(relaxed_bernoulli(logits, u, tau) - hard).abs().mean().item() for tau in (1.0, 0.3, 0.05)]
    assert gaps[0] > gaps[1] > gaps[2] and gaps[2] < 0.05


def test_noise_sampler_reuses_its_noise_across_passes():
    """Two passes with the same noise give the same latents; the antithetic noise other ones."""
    torch.manual_seed(0)
    model = get_model("sbm", X_SHAPE, N=6, depth=2)
    x = binary_batch(5)
    first = NoiseSampler()
    z1 = model(x, sampler=first)["z"]
    z2 = model(x, sampler=NoiseSampler(first.noise))["z"]
    antithetic = model(x, sampler=NoiseSampler({g: 1 - u for g, u in first.noise.items()}))["z"]
    assert sorted(first.noise) == [0, 1]
    assert all(torch.equal(a, b) for a, b in zip(z1, z2))
    assert not torch.equal(z1[1], antithetic[1])


def test_noise_sampler_refuses_non_bernoulli_latents():
    with pytest.raises(ValueError, match="Bernoulli latents"):
        NoiseSampler()(0, Normal(torch.zeros(2), torch.ones(2)))
    assert NoiseSampler()(0, Bernoulli(logits=torch.zeros(3))).shape == (3,)
