"""unordered-set against the exact gradient of the enumerable binary model, under the joint law of
sampling without replacement (``UnorderedSet.tuple_probabilities``, checked against the sampler's
frequencies), and on average on categorical VAEs; a broken variant fails the check. Its parts
(``without_replacement.py``): stochastic beam search draws sets with the law of sampling without
replacement (beams without the conditioned Gumbels do not), and the quadrature of the set
probabilities matches the sum over the orderings."""
import itertools
import math

import pytest
import torch
from scipy.stats import chi2

from ovis.estimators import without_replacement
from ovis.estimators.without_replacement import (log_leave_out, log_set_probability, sample_without_replacement,
                                                stochastic_beam_search)

from ovis.estimators.particles import RuntimeOptions
from ovis.estimators.baselines import ReinforceLeaveOneOut
from ovis.estimators.exact import ExactEnumeration
from ovis.estimators.unordered_set import UnorderedSet
from ovis.models import get_model
from ovis.testing import EnumerableModel, enumerate_estimator

from .helpers import batch_mean_z_scores, exact_gradients, flat

X = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)


class BrokenUnorderedSet(UnorderedSet):
    """The baseline without its leave-one-out correction: sum_s' p(s') f(s') over the set."""

    def baselines(self, log_p, bound):
        weights, _ = super().baselines(log_p, bound)
        return weights, (log_p.exp() * bound).sum(1, keepdim=True).expand_as(bound)


def error(mean, model, iw, **runtime):
    exact = exact_gradients(model, model.exact_iw_bound(X, iw, **runtime).sum())
    return (flat(mean) - flat(exact)).abs().max().item()


@pytest.mark.parametrize("units,mc,iw,runtime", [(2, 2, 1, {}), (2, 3, 1, {"alpha": 0.3, "beta": 0.7}),
                                                 (3, 4, 1, {}), (2, 2, 2, {"freebits": 0.3}),
                                                 pytest.param(3, 5, 1, {}, marks=pytest.mark.slow)])
def test_unordered_set_matches_the_exact_gradient_without_replacement(units, mc, iw, runtime):
    """(4 of 4 states would be the whole domain, where any baseline is exact: 4 of 8 instead.)"""
    model = EnumerableModel(x_dim=3, z_dims=(units,), seed=0).double()
    mean, variance = enumerate_estimator(UnorderedSet(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(mean, model, iw, **runtime) < 1e-12
    broken, _ = enumerate_estimator(BrokenUnorderedSet(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(broken, model, iw, **runtime) > 1e-3
    _, loo_variance = enumerate_estimator(ReinforceLeaveOneOut(mc, iw).double(), model, X, **runtime)
    assert flat(variance, "inference").sum() < flat(loo_variance, "inference").sum()


def test_the_sampler_draws_distinct_elements_with_the_law_of_sampling_without_replacement():
    """30000 draws of 3 of the 4 states of the enumerable model: every tuple is distinct and the
    frequency of each ordered tuple is within 5 standard errors of ``tuple_probabilities``."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    estimator = UnorderedSet(3, 1, x_shape=(3,)).double()
    particles = estimator.sample(model, X.expand(30000, -1), RuntimeOptions())
    draws = particles.output["z"][0].view(30000, 3, 2)  # [n, mc, N]
    codes = (draws[..., 0] * 2 + draws[..., 1]).long()  # [n, mc]: state index
    assert (codes.sort(-1).values.diff(dim=-1) > 0).all()
    p = torch.sigmoid(model.infer(X)[0].logits.detach())[0]
    states = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    tuples = model.tuple_indices(3)  # [64, 3] over 2 units = 4 states
    law = estimator.tuple_probabilities(p, states[tuples].view(-1, 3, 1, 2))  # [64]
    assert law.sum().item() == pytest.approx(1, abs=1e-12)
    frequency = torch.bincount(codes[:, 0] * 16 + codes[:, 1] * 4 + codes[:, 2], minlength=64).double() / 30000
    assert ((frequency - law).abs() <= 5 * (law * (1 - law) / 30000).sqrt() + 1e-12).all()


@pytest.mark.parametrize("units,mc,repeat", [(1, 3, 100), (2, 8, 50)])
def test_unordered_set_on_a_categorical_vae_agrees_with_exact_on_average(units, mc, repeat):
    """``units`` units of 5 categories, mc elements drawn without replacement (at mc = 8 by stochastic
    beam search over 25 states): the mean gradient is within 5 standard errors of the exact gradient,
    coordinate by coordinate."""
    torch.manual_seed(0)
    model = get_model("vae", (3,), prior="categorical", N=units, K=5, hdim=4, nlayers=1, depth=1).double()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    ExactEnumeration(1, 1, x_shape=(3,)).double()(model, x)[0].mean().backward()
    target = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.manual_seed(1)
    z = batch_mean_z_scores(UnorderedSet(mc, 1, x_shape=(3,)).double(), model, x, target, repeat=repeat)
    assert z.max() < 5, z.max()


@pytest.mark.parametrize("make,model,message", [
    (lambda: UnorderedSet(2, 1, x_shape=(3,)), lambda: EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0),
     "1 stochastic layer"),
    (lambda: UnorderedSet(3, 1, x_shape=(3,)), lambda: EnumerableModel(x_dim=3, z_dims=(1,), seed=0),
     "only S\\^K = \\(2\\^1\\)\\^1 iw-tuples of latent states: use --mc 2 or fewer"),
    (lambda: UnorderedSet(2, 1, x_shape=(3,)),
     lambda: get_model("vae", (3,), prior="normal", N=2, hdim=4, nlayers=1, depth=1), "gaussian latents"),
])
def test_models_it_cannot_serve_are_refused_before_any_work(make, model, message):
    model = model().double()
    with pytest.raises(ValueError, match=message):
        make().double()(model, X)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("mc,message", [(1, "needs mc >= 2, got mc=1; use mc=2"), (17, "mc <= 16, got mc=17; use mc=16")])
def test_the_set_size_is_checked_with_the_fix(mc, message):
    with pytest.raises(ValueError, match=message):
        UnorderedSet(mc, 1)


def permutation_sum(p, excluded):
    """``p^{D\\A}(T)`` as the sum over the m! orderings of T: ``p [..., m]``, ``p(A) excluded [...]``."""
    orders = torch.tensor(list(itertools.permutations(range(p.shape[-1]))))  # [m!, m]
    ordered = p[..., orders]  # [..., m!, m]
    before = ordered.cumsum(-1) - ordered  # [..., m!, m]
    return (ordered / (1 - excluded[..., None, None] - before)).prod(-1).sum(-1)  # [...]


@pytest.mark.parametrize("m", range(1, 8))
@pytest.mark.parametrize("scale", [1e-30, 1e-4, 1.0])
def test_the_quadrature_of_a_set_probability_matches_the_sum_over_its_orderings(m, scale):
    """Sets of m elements of random probabilities (at most ``scale``), with and without excluded
    mass: relative error below 1e-11, also where the probabilities underflow a product."""
    generator = torch.Generator().manual_seed(m)
    weights = torch.rand(20, m + 3, generator=generator, dtype=torch.float64) ** 3  # [20, m + 3]
    p = weights / weights.sum(-1, keepdim=True)  # [20, m + 3]: T, A (2 elements), the rest
    p = p * torch.where(torch.arange(m + 3) < m, scale / p[:, :m].max(-1, keepdim=True).values, 1.0).clamp(max=1)
    excluded = torch.where(torch.arange(20) % 2 == 0, p[:, m:m + 2].sum(-1), 0.0)  # [20]
    exact = permutation_sum(p[:, :m], excluded).log()  # [20]
    estimate = log_set_probability(p[:, :m].log(), excluded.log())  # [20]
    assert (estimate - exact).abs().max() < 1e-11


@pytest.mark.parametrize("k", [2, 8, 16])
def test_the_leave_out_probabilities_are_those_of_the_smaller_sets(k):
    """``log_leave_out`` against ``log_set_probability`` with the elements left out excluded, and
    the closed form ``log(k!) + sum_i log p_i`` (to first order) at probabilities of 1e-40."""
    log_p = torch.log(torch.rand(3, k, generator=torch.Generator().manual_seed(k), dtype=torch.float64) / k)
    full, one_out, two_out = log_leave_out(log_p)  # [3], [3, k], [3, k, k]
    assert torch.allclose(full, log_set_probability(log_p, torch.full((3,), -math.inf)), rtol=0, atol=1e-14)
    s, t = 0, k - 1
    others = log_p[:, 1:k - 1]  # [3, k - 2]
    assert torch.allclose(one_out[:, s], log_set_probability(log_p[:, 1:], log_p[:, s]), rtol=0, atol=1e-12)
    pair = torch.logaddexp(log_p[:, s], log_p[:, t])  # [3]
    assert torch.allclose(two_out[:, s, t], log_set_probability(others, pair), rtol=0, atol=1e-12)
    assert torch.equal(two_out.diagonal(dim1=1, dim2=2), one_out)
    tiny = log_p - 90  # [3, k]
    assert torch.allclose(log_leave_out(tiny)[0], math.lgamma(k + 1) + tiny.sum(-1), rtol=1e-15, atol=1e-13)


def beam_search_chi_square(sample, draws=20000):
    """Pearson's statistic of the sets of 3 of the 8 states of 3 binary units drawn by ``sample``
    against their probabilities under sampling without replacement (55 degrees)."""
    torch.manual_seed(0)
    log_p = torch.log_softmax(1.5 * torch.randn(3, 2, dtype=torch.float64), -1)  # [U, C]
    chosen = sample(log_p.expand(draws, -1, -1), 3)  # [n, 3, U]
    codes = (chosen * torch.tensor([4, 2, 1])).sum(-1).sort(-1).values  # [n, 3]
    assert (codes.diff(dim=-1) > 0).all()
    sets = torch.tensor(list(itertools.combinations(range(8), 3)))  # [56, 3]
    state_log_p = log_p[torch.arange(3), torch.tensor(list(itertools.product(range(2), repeat=3)))].sum(-1)  # [8]
    law = permutation_sum(state_log_p[sets].exp(), torch.zeros(56, dtype=torch.float64))  # [56]
    assert law.sum().item() == pytest.approx(1, abs=1e-12)
    observed = (codes[:, None, :] == sets).all(-1).sum(0).double()  # [56]
    return ((observed - draws * law) ** 2 / (draws * law)).sum().item()


@pytest.mark.parametrize("sample", [stochastic_beam_search,
                                    lambda log_p, k: sample_without_replacement(log_p, k, max_categories=4)])
def test_stochastic_beam_search_draws_sets_with_the_law_of_sampling_without_replacement(sample, monkeypatch):
    """Unit by unit, and in blocks of 2 units (the second block padded): below the 0.999 quantile
    of chi-square(55); beams that keep their children's unconditioned Gumbels (a plain beam search
    on perturbed log-probabilities) fail it."""
    assert beam_search_chi_square(sample) < chi2.ppf(0.999, 55)
    monkeypatch.setattr(without_replacement, "conditioned_gumbels",
                        lambda parent, children: torch.where(parent[..., None] == -math.inf, parent[..., None], children))
    assert beam_search_chi_square(sample) > chi2.ppf(0.999, 55)
