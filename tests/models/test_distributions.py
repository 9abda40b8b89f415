"""Latent distributions: exact log-probabilities and sampling frequencies (5-sigma bounds)."""
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Categorical

from ovis.models.distributions import (BernoulliLogits, GumbelSoftmaxCategorical, bernoulli_logit_bias,
                                       latent_family)

LOGITS = torch.tensor([[0.0, 1.0, 2.0, -1.0], [3.0, 0.0, 0.0, 0.0]])  # [2, C=4]


def assert_frequencies(counts, probs, n):
    """Multinomial / binomial counts within 5 standard deviations of n * probs."""
    std = (n * probs * (1 - probs)).sqrt()
    assert ((counts - n * probs).abs() <= 5 * std + 1e-9).all(), (counts / n, probs)


def test_categorical_samples_are_one_hot_with_the_right_frequencies():
    torch.manual_seed(0)
    n = 20000
    dist = GumbelSoftmaxCategorical(LOGITS)
    samples = dist.sample((n,))  # [n, 2, 4]
    assert samples.shape == (n, 2, 4) and not samples.requires_grad
    assert torch.equal(samples.sum(-1), torch.ones(n, 2))
    assert_frequencies(samples.sum(0), F.softmax(LOGITS, -1), n)


def test_categorical_log_prob_is_exact_on_one_hot_values():
    dist = GumbelSoftmaxCategorical(LOGITS + 5.0)  # unnormalised logits are normalised
    index = torch.tensor([2, 0])
    torch.testing.assert_close(dist.log_prob(F.one_hot(index, 4).float()), Categorical(logits=LOGITS).log_prob(index))
    torch.testing.assert_close(dist.probs, F.softmax(LOGITS, -1))
    torch.testing.assert_close(dist.entropy(), Categorical(logits=LOGITS).entropy())


def test_straight_through_sample_is_hard_with_the_soft_gradient():
    logits = LOGITS.clone().requires_grad_(True)
    weights = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(1)
    hard = GumbelSoftmaxCategorical(logits, tau=0.0).rsample()
    (hard * weights).sum().backward()
    hard_grad = logits.grad.clone()
    logits.grad = None
    torch.manual_seed(1)  # same Gumbel noise, relaxed sample at the straight-through temperature 0.5
    soft = F.gumbel_softmax(logits, tau=0.5, hard=False)
    (soft * weights).sum().backward()
    torch.testing.assert_close(hard.detach(), F.one_hot(soft.argmax(-1), 4).float())
    torch.testing.assert_close(hard_grad, logits.grad)


def test_relaxed_samples_live_in_the_simplex_and_keep_the_argmax_law():
    torch.manual_seed(2)
    n = 20000
    soft = GumbelSoftmaxCategorical(LOGITS, tau=2.0).rsample((n,))  # [n, 2, 4]
    torch.testing.assert_close(soft.sum(-1), torch.ones(n, 2))
    assert ((soft > 0) & (soft < 1)).all()
    counts = F.one_hot(soft.argmax(-1), 4).sum(0).float()  # Gumbel-max: argmax ~ Categorical(probs)
    assert_frequencies(counts, F.softmax(LOGITS, -1), n)
    with pytest.raises(ValueError, match="tau"):
        GumbelSoftmaxCategorical(LOGITS, tau=-1.0)


def test_bernoulli_logits_matches_torch_bernoulli():
    torch.manual_seed(3)
    logits = torch.tensor([-3.0, -0.5, 0.0, 2.0, 8.0])
    dist = BernoulliLogits(logits)
    n = 40000
    samples = dist.sample((n,))
    assert samples.shape == (n, 5) and set(samples.unique().tolist()) <= {0.0, 1.0}
    assert_frequencies(samples.sum(0), torch.sigmoid(logits), n)
    value = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0])
    torch.testing.assert_close(dist.log_prob(value), Bernoulli(logits=logits).log_prob(value))


def test_families_build_the_documented_distributions():
    params = torch.randn(3, 5, 2)  # [rows, N, P]
    normal = latent_family("normal", 0).distribution(params)
    torch.testing.assert_close(normal.loc, params[..., 0])
    torch.testing.assert_close(normal.scale, params[..., 1].exp())
    bernoulli = latent_family("bernoulli", 0).distribution(params[..., :1])
    torch.testing.assert_close(bernoulli.logits, params[..., 0])
    categorical = latent_family("categorical", 2)
    assert categorical.n_params == categorical.unit_size == 2
    with pytest.raises(ValueError, match="allowed"):
        latent_family("poisson", 0)


def test_logit_bias_is_clipped():
    bias = bernoulli_logit_bias(torch.tensor([0.0, 0.25, 1.0]))
    torch.testing.assert_close(torch.sigmoid(bias), torch.tensor([1e-4, 0.25, 1 - 1e-4]))
