"""exact, indecater, double-cv, arms and rodeo against the exact gradient of the enumerable binary model.

``exact``, ``indecater``, ``double-cv`` and ``rodeo`` draw independent particles: ``enumerate_estimator``
averages them over every tuple of particles. ``arms`` draws the mc samples of a data point
together through a copula: the harness weighs every tuple by its probability under the copula
(``ARMS.tuple_probabilities``, whose law is checked on its own). Each estimator
matches the exact gradient of its bound for theta and phi to rounding; a deliberately broken
variant fails the same check; each refuses the models it cannot serve before any work.
"""
import math

import pytest
import torch

from ovis.estimators.arms import ARMS, CopulaSampler, unit_pattern_probabilities
from ovis.estimators.baselines import ReinforceLeaveOneOut
from ovis.estimators.double_cv import DoubleControlVariate
from ovis.estimators.exact import ExactEnumeration
from ovis.estimators.indecater import IndeCateR
from ovis.estimators.rodeo import Rodeo, leave_one_out
from ovis.models import get_model
from ovis.testing import EnumerableModel, enumerate_estimator, per_datum_gradients

from .helpers import batch_mean_z_scores, exact_gradients, flat, flat_samples, max_z_score

X = torch.tensor([[1.0, 0.0, 1.0]], dtype=torch.float64)


def error(mean, model, iw, **runtime):
    exact = exact_gradients(model, model.exact_iw_bound(X, iw, **runtime).sum())
    return (flat(mean) - flat(exact)).abs().max().item()


class BrokenExact(ExactEnumeration):
    """The tuple probabilities held constant (no score term for phi)."""

    def state_log_weights(self, model, x, options):
        log_weights, log_q = super().state_log_weights(model, x, options)
        return log_weights, log_q.detach()


class BrokenIndeCateR(IndeCateR):
    """Every changed unit's bound shifted by 0.2 (a baseline that depends on the category)."""

    def changed_log_weights(self, model, x, indices, options):
        return super().changed_log_weights(model, x, indices, options) + 0.2


class BrokenDoubleControlVariate(DoubleControlVariate):
    """The analytic expectation of the linear control variate left out."""

    def group_terms(self, model, x, particles, control_variate, options):
        return super().group_terms(model, x, particles, control_variate, options)[0], 0.0


class BrokenRodeo(Rodeo):
    """The vector control variate's g1 taken at the sample itself instead of at its neighbours."""

    def logit_coefficients(self, bound, slopes, x, p):
        jumps = leave_one_out(slopes) * (1 - 2 * x)
        return super().logit_coefficients(bound, slopes, x, p) + self.vector_scale * jumps


CASES = [((2,), 1, 1, {}), ((2,), 1, 3, {"alpha": 0.3, "beta": 0.7}), ((2,), 2, 2, {"freebits": 0.3})]


@pytest.mark.parametrize("z_dims,mc,iw,runtime", CASES + [((1, 1), 1, 2, {"beta": 0.7})])
def test_exact_is_the_exact_gradient_with_zero_variance(z_dims, mc, iw, runtime):
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    mean, variance = enumerate_estimator(ExactEnumeration(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(mean, model, iw, **runtime) < 1e-12
    assert flat(variance).abs().max() < 1e-24
    broken, _ = enumerate_estimator(BrokenExact(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(broken, model, iw, **runtime) > 1e-3


@pytest.mark.parametrize("z_dims,mc,iw,runtime", CASES)
def test_indecater_matches_the_exact_gradient(z_dims, mc, iw, runtime):
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    mean, _ = enumerate_estimator(IndeCateR(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(mean, model, iw, **runtime) < 1e-12
    broken, _ = enumerate_estimator(BrokenIndeCateR(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(broken, model, iw, **runtime) > 1e-3


LEAVE_ONE_OUT_CASES = [((2,), 2, 1, {}), ((2,), 3, 1, {"alpha": 0.3, "beta": 0.7}), ((2,), 2, 2, {"freebits": 0.3})]


@pytest.mark.parametrize("cls,broken_cls,ratio,z_dims,mc,iw,runtime",
                         [(DoubleControlVariate, BrokenDoubleControlVariate, 0.7, *case) for case in LEAVE_ONE_OUT_CASES]
                         + [(Rodeo, BrokenRodeo, 0.5, *case) for case in LEAVE_ONE_OUT_CASES + [((3,), 2, 1, {})]])
def test_control_variates_match_the_exact_gradient_with_less_variance_than_leave_one_out(
        cls, broken_cls, ratio, z_dims, mc, iw, runtime):
    """double-cv and rodeo: exact on average, exact variance below ``ratio`` times reinforce-loo's."""
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    mean, variance = enumerate_estimator(cls(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(mean, model, iw, **runtime) < 1e-12
    _, loo_variance = enumerate_estimator(ReinforceLeaveOneOut(mc, iw).double(), model, X, **runtime)
    assert flat(variance, "inference").sum() < ratio * flat(loo_variance, "inference").sum()
    broken, _ = enumerate_estimator(broken_cls(mc, iw, x_shape=(3,)).double(), model, X, **runtime)
    assert error(broken, model, iw, **runtime) > 1e-3


def test_rodeo_without_its_control_variates_is_leave_one_out():
    """Both coefficients 0: the leave-one-out estimator, to rounding, mean and variance."""
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    plain = enumerate_estimator(Rodeo(3, 1, scalar_scale=0, vector_scale=0, x_shape=(3,)).double(), model, X)
    loo = enumerate_estimator(ReinforceLeaveOneOut(3, 1).double(), model, X)
    for ours, theirs in zip(plain, loo):
        assert (flat(ours) - flat(theirs)).abs().max() < 1e-12


def test_indecater_has_less_variance_than_reinforce():
    from ovis.estimators.score_function import Reinforce
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=0).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    variances = [flat(enumerate_estimator(cls(1, 2, x_shape=(4,)).double(), model, x)[1], "inference").sum()
                 for cls in (IndeCateR, Reinforce)]
    assert variances[0] < 0.5 * variances[1]


def categorical_vae(seed=0):
    torch.manual_seed(seed)
    model = get_model("vae", (3,), prior="categorical", N=2, K=3, hdim=4, nlayers=1, depth=1).double()
    return model, torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def test_indecater_on_categorical_latents_agrees_with_exact_on_average():
    """The categorical VAE (2 units of 3 categories, 9 states): the mean of 4000 IndeCateR
    gradients is within 5 standard errors of the exact gradient, coordinate by coordinate."""
    model, x = categorical_vae()
    exact = ExactEnumeration(1, 2, x_shape=(3,)).double()
    exact(model, x)[0].mean().backward()
    target = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.manual_seed(1)
    z = batch_mean_z_scores(IndeCateR(1, 2, x_shape=(3,)).double(), model, x, target)
    assert z.max() < 5, z.max()


@pytest.mark.parametrize("make,message", [
    (lambda: IndeCateR(1, 2, x_shape=(3,)), "1 stochastic layer"),
    (lambda: ExactEnumeration(1, 20, x_shape=(3,)), "max_tuples"),
    (lambda: DoubleControlVariate(2, 1, x_shape=(3,)), "1 stochastic layer"),
    (lambda: ARMS(2, 1, x_shape=(3,)), "1 stochastic layer"),
    (lambda: Rodeo(2, 1, x_shape=(3,)), "1 stochastic layer"),
])
def test_models_they_cannot_serve_are_refused_before_any_work(make, message):
    model = EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0).double()
    estimator = make().double()
    with pytest.raises(ValueError, match=message):
        estimator(model, X)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("cls", [DoubleControlVariate, ARMS, Rodeo])
def test_leave_one_out_estimators_need_two_outer_samples(cls):
    with pytest.raises(ValueError, match="needs mc >= 2, got mc=1; use mc=2"):
        cls(1, 4)


@pytest.mark.parametrize("cls", [ARMS, Rodeo])
def test_bernoulli_only_estimators_refuse_categorical_latents(cls):
    model, _ = categorical_vae()
    with pytest.raises(ValueError, match="accepts bernoulli latents, but .* categorical latents"):
        cls(2, 1, x_shape=(3,)).check_model(model)


@pytest.mark.parametrize("cls", [IndeCateR, ExactEnumeration, DoubleControlVariate, ARMS, Rodeo])
def test_gaussian_latents_are_refused_with_the_fix(cls):
    torch.manual_seed(0)
    model = get_model("vae", (3,), prior="normal", N=2, hdim=4, nlayers=1, depth=1)
    with pytest.raises(ValueError, match="accepts bernoulli.* latents, but .* gaussian latents"):
        cls(2, 2, x_shape=(3,)).check_model(model)


def test_evaluation_counts():
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    indecater, exact = IndeCateR(2, 3, x_shape=(3,)), ExactEnumeration(1, 2, x_shape=(3,))
    indecater.check_model(model), exact.check_model(model)
    assert indecater.model_evaluations() == 2 * 3 * (1 + 2)
    assert Rodeo(2, 3, x_shape=(3,)).model_evaluations() == 2 * 3  # the neighbours come from Taylor expansions
    assert exact.model_evaluations() == 1 * 2 + 4


@pytest.mark.parametrize("copula,n", [("dirichlet", 2), ("dirichlet", 3), ("dirichlet", 5), ("gaussian", 2),
                                      ("gaussian", 3)])
def test_the_copula_law_of_a_unit(copula, n):
    """The probabilities of the patterns of one unit over the n samples: a law (non-negative, sum
    one over the patterns), marginal m, pairs C(m, m); for the Gaussian copula C(m, m) from scipy's
    Owen's T, an implementation independent of the estimator's quadrature."""
    from scipy.special import ndtri, owens_t
    for m in (0.05, 0.3, 0.5):
        patterns = unit_pattern_probabilities(m, n, copula)  # a given set of r rare samples, r = 0..n
        assert min(patterns) > -1e-15
        assert sum(math.comb(n, r) * q for r, q in enumerate(patterns)) == pytest.approx(1, abs=1e-12)
        assert sum(math.comb(n - 1, r - 1) * patterns[r] for r in range(1, n + 1)) == pytest.approx(m, abs=1e-12)
        pair = sum(math.comb(n - 2, r - 2) * patterns[r] for r in range(2, n + 1))
        if copula == "gaussian" and n == 3:
            assert pair == pytest.approx(m - 2 * owens_t(ndtri(m), 3 ** 0.5), abs=1e-12)
        else:
            assert pair == pytest.approx(max(2 * m ** (1 / (n - 1)) - 1, 0) ** (n - 1), abs=1e-12)


class BrokenARMS(ARMS):
    """The leave-one-out estimator without the copula's correction (the independent samples' rescaling)."""

    def debias(self, p):
        return torch.ones_like(p)


ARMS_CASES = [(copula, mc, iw, runtime) for copula in ("dirichlet", "gaussian")
              for mc, iw, runtime in [(2, 1, {}), (3, 1, {"alpha": 0.3, "beta": 0.7}), (2, 2, {"freebits": 0.3}),
                                      (4, 1, {})]
              if copula == "dirichlet" or mc <= 3]  # the Gaussian law of four samples has no closed form here


@pytest.mark.parametrize("copula,mc,iw,runtime", ARMS_CASES)
def test_arms_matches_the_exact_gradient_under_its_copula(copula, mc, iw, runtime):
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    mean, variance = enumerate_estimator(ARMS(mc, iw, copula=copula, x_shape=(3,)).double(), model, X, **runtime)
    assert error(mean, model, iw, **runtime) < 1e-10
    broken, _ = enumerate_estimator(BrokenARMS(mc, iw, copula=copula, x_shape=(3,)).double(), model, X, **runtime)
    assert error(broken, model, iw, **runtime) > 1e-3
    _, loo_variance = enumerate_estimator(ReinforceLeaveOneOut(mc, iw).double(), model, X, **runtime)
    assert flat(variance, "inference").sum() < flat(loo_variance, "inference").sum()


@pytest.mark.parametrize("copula", ["dirichlet", "gaussian"])
def test_arms_draws_from_its_copula(copula):
    """20000 gradients from the sampler itself (no fixed latents): their mean is within 5
    standard errors of the exact gradient, and each particle is a draw of q."""
    torch.manual_seed(0)
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    estimator = ARMS(3, 1, copula=copula, x_shape=(3,)).double()
    samples = per_datum_gradients(estimator, model, X, 20000)
    exact = exact_gradients(model, model.exact_iw_bound(X, 1).sum())
    assert max_z_score(flat_samples(samples), flat(exact)) < 5
    draws = model(X.expand(30000, -1), sampler=CopulaSampler(3, 1, copula))["z"][0].view(10000, 3, 2)
    p = torch.sigmoid(model.infer(X)[0].logits.detach())[0]
    for unit, p_unit in enumerate(p.tolist()):  # frequencies of the number of rare samples of 3
        rare = (draws[..., unit] == float(p_unit < 0.5)).sum(1)  # [10000]
        law = unit_pattern_probabilities(min(p_unit, 1 - p_unit), 3, copula)
        for r in range(4):
            expected = math.comb(3, r) * law[r]
            frequency = (rare == r).double().mean().item()
            assert abs(frequency - expected) < 5 * (expected * (1 - expected) / 10000) ** 0.5 + 1e-12, (unit, r)


class BrokenLearnedDoubleControlVariate(DoubleControlVariate):
    """The coefficient's step without the analytic term's part of G1 (its Jacobian dropped)."""

    def coefficient_learning(self, bound, linear_part, centred, slopes, mean):
        return super().coefficient_learning(bound, linear_part, centred, torch.zeros_like(slopes), mean)


class BrokenLearnedRodeo(Rodeo):
    """The coefficients' steps with the scalar control variate's part of G taken with the wrong sign."""

    def coefficient_learning(self, bound, slopes, x, p):
        with torch.no_grad():
            self.scalar_scale.neg_()
        try:
            return super().coefficient_learning(bound, slopes, x, p)
        finally:
            with torch.no_grad():
                self.scalar_scale.neg_()


def offset_and_coefficient_gradients(estimator, model, x, bias, coefficients, seed):
    """G, the estimate of the gradient for an offset on every logit of the layer, without the
    loss's zero-mean term ``-mean_m (z_m - mu)`` (the gradient through log q of the ELBO, which does
    not depend on the coefficients; iw = 1), read from the logits' bias (one data point); and the
    estimator's gradients for its coefficients ``[P]``."""
    parameters = list(estimator.parameters())
    for parameter, value in zip(parameters, coefficients):
        parameter.data.fill_(value)
    model.zero_grad()
    estimator.zero_grad()
    sampled = []
    sample = estimator.sample
    estimator.sample = lambda *args: sampled.append(sample(*args)) or sampled[-1]  # keep the call's Particles
    torch.manual_seed(seed)
    loss, _, _ = estimator(model, x)
    loss.mean().backward()
    del estimator.sample
    z = sampled[0].leaves[0].detach()  # [mc, N] or [mc, N, C]
    pathwise = -(z - model.infer(x)[0].mean.detach()).mean(0).flatten()  # [N] or [N * C]
    return -bias.grad - pathwise, torch.stack([p.grad for p in parameters])


LEARNED = [(DoubleControlVariate, BrokenLearnedDoubleControlVariate, False, {}),
           (DoubleControlVariate, BrokenLearnedDoubleControlVariate, True, {}),
           (Rodeo, BrokenLearnedRodeo, False, {})]


@pytest.mark.parametrize("cls,broken_cls,categorical,config", LEARNED)
def test_learned_coefficients_step_down_the_variance_objective(cls, broken_cls, categorical, config):
    """``double-cv-learned`` and ``rodeo-learned``: the gradient for each coefficient c_j is
    ``d mean_n G_n^2 / d c_j`` (G is linear in them: a unit step of each on the same particles
    gives G_j), on Bernoulli and categorical latents; the broken variant fails; and every value
    of the coefficients keeps the estimate exact (enumeration)."""
    if categorical:
        model, x = categorical_vae()
        x, bias = x[:1], dict(model.named_parameters())["inference_network.0.net.2.bias"]
    else:
        model, x = EnumerableModel(x_dim=3, z_dims=(3,), seed=0).double(), X
        bias = model.inference_network["bias_0"]
    for variant in (cls, broken_cls):
        estimator = variant(3, 1, learn=True, x_shape=(3,)).double()
        start = torch.tensor([0.4, 0.3][:len(list(estimator.parameters()))], dtype=torch.float64)
        errors = []
        for seed in range(3):
            g, steps = offset_and_coefficient_gradients(estimator, model, x, bias, start, seed)
            parts = [offset_and_coefficient_gradients(estimator, model, x, bias, start + unit, seed)[0] - g
                     for unit in torch.eye(len(start), dtype=torch.float64)]  # G_j  [N]
            expected = torch.stack([2 * (g * part).mean() for part in parts])
            errors.append(((steps - expected).abs() / expected.abs()).max().item())
        assert max(errors) < 1e-9 if variant is cls else max(errors) > 1e-3, (variant.__name__, errors)
    if not categorical:
        for z_dims, mc, iw, runtime in LEAVE_ONE_OUT_CASES:
            small = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
            learned = cls(mc, iw, learn=True, x_shape=(3,)).double()
            for parameter in learned.parameters():
                parameter.data.fill_(0.7)
            assert error(enumerate_estimator(learned, small, X, **runtime)[0], small, iw, **runtime) < 1e-12
