"""Latent distributions: exact log-probabilities and sampling frequencies (5-sigma bounds), and
the ``torch.distributions`` contract (``expand``, ``support``, ``log_prob`` a density: it
integrates to 1 numerically) of the relaxed ones; the original's categorical
(``reproduce_original=True``) keeps its surrogate ``log_prob``, which is not a density."""
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import (Bernoulli, Categorical, Normal, OneHotCategoricalStraightThrough, RelaxedBernoulli,
                                 RelaxedOneHotCategorical)

from ovis.models.distributions import (BernoulliLogits, GumbelSoftmaxCategorical, NormalLogScale, OneHotCategoricalLogits,
                                       bernoulli_logit_bias, latent_family)

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


def _distributions(reproduce_original: bool):
    """One distribution per family and temperature, batch ``[3, 5]``."""
    torch.manual_seed(4)
    bernoulli, categorical = latent_family("bernoulli", 0, reproduce_original), latent_family("categorical", 3,
                                                                                           reproduce_original)
    return [family.distribution(torch.randn(3, 5, family.n_params), tau)  # params [rows, N, P]
            for family in (bernoulli, categorical) for tau in (0.0, 0.7)]


@pytest.mark.parametrize("reproduce_original", [False, True])
def test_distributions_expand_and_their_samples_lie_in_their_support(reproduce_original):
    for dist in _distributions(reproduce_original):
        expanded = dist.expand(torch.Size([2, 3, 5]))
        assert expanded.batch_shape == (2, 3, 5) and expanded.event_shape == dist.event_shape
        draws = [expanded.sample()] + ([expanded.rsample()] if dist.has_rsample else [])
        for value in draws:
            assert value.shape == (2, 3, 5) + dist.event_shape
            assert dist.support.check(value).all(), (type(dist).__name__, dist.support)
        torch.testing.assert_close(expanded.log_prob(draws[0])[1], dist.log_prob(draws[0][1]))


def test_the_families_use_torch_distributions_unless_told_to_reproduce_the_original():
    kinds = [type(dist) for dist in _distributions(reproduce_original=False)]
    assert kinds == [BernoulliLogits, RelaxedBernoulli, OneHotCategoricalLogits, RelaxedOneHotCategorical]
    assert issubclass(OneHotCategoricalLogits, OneHotCategoricalStraightThrough)
    kinds = [type(dist) for dist in _distributions(reproduce_original=True)]
    assert kinds == [BernoulliLogits, BernoulliLogits, GumbelSoftmaxCategorical, GumbelSoftmaxCategorical]


def test_straight_through_one_hot_passes_the_gradient_of_the_probabilities():
    logits = LOGITS.clone().requires_grad_(True)
    weights = torch.randn(2, 4, generator=torch.Generator().manual_seed(0))
    hard = latent_family("categorical", 4).distribution(logits, tau=0.0).rsample()  # [2, 4]
    assert torch.equal(hard.detach().sum(-1), torch.ones(2)) and set(hard.detach().unique().tolist()) == {0.0, 1.0}
    (hard * weights).sum().backward()
    probs_logits = LOGITS.clone().requires_grad_(True)
    (F.softmax(probs_logits, -1) * weights).sum().backward()
    torch.testing.assert_close(logits.grad, probs_logits.grad)


def _logistic_grid(dims: int, points: int):
    """Grid of logit coordinates ``u [points ** dims, dims]`` over [-30, 30]^dims, its cell volume,
    and the simplex points ``x = softmax(u, 0) [.., dims + 1]`` with the Jacobian ``prod x`` of
    ``u -> x[:dims]``."""
    axis = torch.linspace(-30.0, 30.0, points, dtype=torch.float64)
    u = torch.stack(torch.meshgrid(*[axis] * dims, indexing="ij"), -1).reshape(-1, dims)
    x = F.softmax(torch.cat([u, torch.zeros(len(u), 1, dtype=torch.float64)], -1), -1)
    return x, x.prod(-1), (axis[1] - axis[0]) ** dims


@pytest.mark.parametrize("categories, points", [(2, 20001), (3, 801)])
@pytest.mark.parametrize("tau", [0.7, 2.0])
def test_relaxed_log_probs_are_densities_that_integrate_to_one(categories, points, tau):
    x, jacobian, cell = _logistic_grid(categories - 1, points)
    logits = torch.tensor([0.4, -0.6, 1.1][:categories], dtype=torch.float64)
    relaxed = latent_family("categorical", categories).distribution(logits, tau)
    assert (relaxed.log_prob(x).exp() * jacobian).sum() * cell == pytest.approx(1.0, abs=2e-3)
    if categories == 2:
        bernoulli = latent_family("bernoulli", 0).distribution(logits[:1], tau)  # batch [1]
        assert (bernoulli.log_prob(x[:, 0]).exp() * jacobian).sum() * cell == pytest.approx(1.0, abs=2e-3)
    original = latent_family("categorical", categories, reproduce_original=True).distribution(logits, tau)
    assert (original.log_prob(x).exp() * jacobian).sum() * cell != pytest.approx(1.0, abs=0.1)


def _values_and_gradients(log_prob, inputs, weights):
    """``log_prob()`` and the gradients of ``sum(weights * log_prob())`` w.r.t. ``inputs``."""
    values = log_prob()
    return [values] + list(torch.autograd.grad((weights * values).sum(), inputs, retain_graph=True))


@pytest.mark.parametrize("relaxed", [False, True])
@pytest.mark.parametrize("shared_logits", [False, True])
def test_fused_bernoulli_log_density_has_the_values_and_gradients_of_torch_bernoulli(relaxed, shared_logits):
    """Binary values (score-function steps: the sampler's probabilities are reused) and relaxed
    values with a gradient (REBAR/RELAX), for per-row logits and for a prior's logits expanded
    over the rows; float64, so any wrong term of the hand-written backward pass shows."""
    generator = torch.Generator().manual_seed(5)
    base = 6 * torch.randn(1 if shared_logits else 7, 4, dtype=torch.float64, generator=generator)
    base.requires_grad_()
    logits = base.expand(7, 4)
    value = torch.rand(7, 4, dtype=torch.float64, generator=generator)
    value = value.requires_grad_() if relaxed else (value < 0.5).double()
    weights = torch.randn(7, 4, dtype=torch.float64, generator=generator)
    inputs = [base] + ([value] if relaxed else [])
    fused = BernoulliLogits(logits)
    if not relaxed:
        fused.probs  # noqa: B018 (computed as by ``sample``: the backward pass reuses it)
    expected = _values_and_gradients(lambda: Bernoulli(logits=logits, validate_args=False).log_prob(value), inputs, weights)
    for actual, wanted in zip(_values_and_gradients(lambda: fused.log_prob(value), inputs, weights), expected):
        torch.testing.assert_close(actual, wanted, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradcheck(lambda b, v: BernoulliLogits(b.expand(7, 4)).log_prob(v), (base, value))


def test_normal_log_scale_has_the_samples_values_and_gradients_of_torch_normal():
    generator = torch.Generator().manual_seed(6)
    loc, log_scale = torch.randn(2, 5, 3, dtype=torch.float64, generator=generator).requires_grad_().unbind(0)
    weights = torch.randn(5, 3, dtype=torch.float64, generator=generator)
    fused, reference = NormalLogScale(loc, log_scale), Normal(loc, log_scale.exp())
    torch.manual_seed(7)
    value = fused.rsample()  # [5, 3]: a pathwise sample (gradient to loc and log_scale)
    torch.manual_seed(7)
    torch.testing.assert_close(value, reference.rsample(), rtol=1e-12, atol=0)
    parameters = [loc, log_scale]
    for given in (value, value.detach().requires_grad_()):
        inputs = parameters + ([given] if given.is_leaf else [])
        actual = _values_and_gradients(lambda: fused.log_prob(given), inputs, weights)
        expected = _values_and_gradients(lambda: reference.log_prob(given), inputs, weights)
        for a, e in zip(actual, expected):
            torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    prior = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True).expand(5, 3, 2).unbind(-1)  # shared rows
    torch.testing.assert_close(NormalLogScale(*prior).log_prob(value), Normal(0.0, 1.0).log_prob(value))
    assert torch.autograd.gradcheck(lambda v, m, s: NormalLogScale(m, s).log_prob(v),
                                    (value.detach().requires_grad_(), loc.detach().requires_grad_(),
                                     log_scale.detach().requires_grad_()))


def _second_derivatives(log_prob, inputs, generator):
    """Gradients w.r.t. ``inputs`` of a random projection of the first gradients (create_graph)."""
    first = torch.autograd.grad(log_prob().sum(), inputs, create_graph=True)
    projection = sum((g * torch.randn(g.shape, dtype=g.dtype, generator=generator)).sum() for g in first)
    return torch.autograd.grad(projection, inputs)


def test_fused_log_densities_have_exact_second_derivatives():
    """REBAR and RELAX differentiate the gradient itself (create_graph=True): the Functions must
    not reuse the sampler's detached probabilities nor their own saved intermediates there."""
    generator = torch.Generator().manual_seed(8)
    logits = (3 * torch.randn(6, 4, dtype=torch.float64, generator=generator)).requires_grad_()
    value = torch.rand(6, 4, dtype=torch.float64, generator=generator).requires_grad_()  # relaxed
    fused = BernoulliLogits(logits)
    fused.probs  # noqa: B018 (cached, as after sampling)
    reference = Bernoulli(logits=logits, validate_args=False)
    for a, e in zip(_second_derivatives(lambda: fused.log_prob(value), [logits, value], torch.Generator().manual_seed(9)),
                    _second_derivatives(lambda: reference.log_prob(value), [logits, value],
                                        torch.Generator().manual_seed(9))):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    loc, log_scale = torch.randn(2, 6, 4, dtype=torch.float64, generator=generator).requires_grad_().unbind(0)
    inputs = [value, loc, log_scale]
    for a, e in zip(_second_derivatives(lambda: NormalLogScale(loc, log_scale).log_prob(value), inputs,
                                        torch.Generator().manual_seed(10)),
                    _second_derivatives(lambda: Normal(loc, log_scale.exp()).log_prob(value), inputs,
                                        torch.Generator().manual_seed(10))):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(lambda l, v: BernoulliLogits(l).log_prob(v), (logits.detach().requires_grad_(),
                                                                                     value.detach().requires_grad_()))
