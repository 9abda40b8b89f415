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
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from ovis.estimators.arms import ARMS, CopulaSampler, unit_pattern_probabilities
from ovis.estimators.baselines import ReinforceLeaveOneOut
from ovis.estimators.double_cv import DoubleControlVariate
from ovis.estimators.exact import ExactEnumeration
from ovis.estimators.indecater import IndeCateR
from ovis.estimators.rodeo import Rodeo, RodeoNet, leave_one_out
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
    """The vector control variate's h1 taken at the sample itself instead of at its neighbours."""

    def control_variates(self, bound, slopes, x, p):
        stein, vector = super().control_variates(bound, slopes, x, p)
        return stein, vector + leave_one_out(slopes) * (1 - 2 * x)


class BrokenRodeoNet(RodeoNet):
    """The network given the sample's own bound f_m instead of the other samples' mean f_-m."""

    def control_functions(self, taylor, bound):
        return self.network(taylor, bound)


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


@pytest.mark.parametrize("z_dims,mc,iw,runtime", LEAVE_ONE_OUT_CASES + [((3,), 2, 1, {})])
def test_rodeo_net_matches_the_exact_gradient_at_any_network(z_dims, mc, iw, runtime):
    """rodeo-net with a random network (standard normal weights and biases, 100 hidden units) and
    a = 0.7, b = -0.4: exact on average; the network fed the sample's own bound is not."""
    model = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
    for cls in (RodeoNet, BrokenRodeoNet):
        estimator = cls(mc, iw, x_shape=(3,)).double()
        torch.manual_seed(1)
        for parameter in estimator.network.parameters():
            parameter.data.normal_()
        estimator.scalar_scale.data.fill_(0.7), estimator.vector_scale.data.fill_(-0.4)
        mean, _ = enumerate_estimator(estimator, model, X, **runtime)
        if cls is RodeoNet:
            assert error(mean, model, iw, **runtime) < 1e-12
        else:
            assert error(mean, model, iw, **runtime) > 1e-3


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
    (lambda: RodeoNet(2, 1, x_shape=(3,)), "1 stochastic layer"),
])
def test_models_they_cannot_serve_are_refused_before_any_work(make, message):
    model = EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0).double()
    estimator = make().double()
    with pytest.raises(ValueError, match=message):
        estimator(model, X)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("cls", [DoubleControlVariate, ARMS, Rodeo, RodeoNet])
def test_leave_one_out_estimators_need_two_outer_samples(cls):
    with pytest.raises(ValueError, match="needs mc >= 2, got mc=1; use mc=2"):
        cls(1, 4)


@pytest.mark.parametrize("cls", [ARMS, Rodeo, RodeoNet])
def test_bernoulli_only_estimators_refuse_categorical_latents(cls):
    model, _ = categorical_vae()
    with pytest.raises(ValueError, match="accepts bernoulli latents, but .* categorical latents"):
        cls(2, 1, x_shape=(3,)).check_model(model)


@pytest.mark.parametrize("cls", [IndeCateR, ExactEnumeration, DoubleControlVariate, ARMS, Rodeo, RodeoNet])
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
    assert RodeoNet(2, 3, x_shape=(3,)).model_evaluations() == 2 * 3
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

    def coefficient_learning(self, bound, stein, vector, score):
        with torch.no_grad():
            self.scalar_scale.neg_()
        try:
            return super().coefficient_learning(bound, stein, vector, score)
        finally:
            with torch.no_grad():
                self.scalar_scale.neg_()


class BrokenLearnedRodeoNet(RodeoNet):
    """The network's step without the vector control variate's part of G."""

    def coefficient_learning(self, bound, stein, vector, score):
        return super().coefficient_learning(bound, stein, vector.detach(), score)


def offset_and_parameter_gradients(estimator, model, x, bias, values, seed):
    """G, the estimate of the gradient for an offset on every logit of the layer, without the
    loss's zero-mean term ``-mean_m (z_m - mu)`` (the gradient through log q of the ELBO, which does
    not depend on the estimator's parameters; iw = 1), read from the logits' bias (one data point);
    and the estimator's gradients for its parameters, set to ``values``, all flat ``[P]``."""
    parameters = list(estimator.parameters())
    vector_to_parameters(values, parameters)
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
    return -bias.grad - pathwise, parameters_to_vector([p.grad for p in parameters])


def parameter_directions(estimator):
    """``(direction, step, tolerance)``: each coefficient (a scalar parameter) with a unit step (G is
    linear in them: the central difference is exact), a random direction of the network's parameters
    (if any) with a step that crosses none of its units' kinks here."""
    sizes = [p.numel() for p in estimator.parameters()]
    coefficients = sum(1 for p in estimator.parameters() if p.dim() == 0)  # the first parameters
    directions = [(unit, 1.0, 1e-9) for unit in torch.eye(sum(sizes), dtype=torch.float64)[:coefficients]]
    if coefficients < len(sizes):
        network = torch.zeros(sum(sizes), dtype=torch.float64)
        network[coefficients:] = torch.randn(sum(sizes) - coefficients, generator=torch.Generator().manual_seed(2))
        directions.append((network, 1e-7, 1e-6))
    return directions


LEARNED = [(DoubleControlVariate, BrokenLearnedDoubleControlVariate, False, {"learn": True}),
           (DoubleControlVariate, BrokenLearnedDoubleControlVariate, True, {"learn": True}),
           (Rodeo, BrokenLearnedRodeo, False, {"learn": True}),
           (RodeoNet, BrokenLearnedRodeoNet, False, {})]


@pytest.mark.parametrize("cls,broken_cls,categorical,config", LEARNED)
def test_learned_parameters_step_down_the_variance_objective(cls, broken_cls, categorical, config):
    """``double-cv-learned``, ``rodeo-learned`` and ``rodeo-net``: the gradient for the parameters
    along each direction v is ``d mean_n G_n^2 / dv = 2 mean_n G_n dG_n/dv`` (``dG/dv`` by central
    differences on the same particles: exact for the coefficients, G is linear in them; to
    ``O(step^2)`` for the network), on Bernoulli and categorical latents; the broken variant fails;
    and every value of the parameters keeps the estimate exact (enumeration)."""
    if categorical:
        model, x = categorical_vae()
        x, bias = x[:1], dict(model.named_parameters())["inference_network.0.net.2.bias"]
    else:
        model, x = EnumerableModel(x_dim=3, z_dims=(3,), seed=0).double(), X
        bias = model.inference_network["bias_0"]
    for variant in (cls, broken_cls):
        torch.manual_seed(0)
        estimator = variant(3, 1, x_shape=(3,), **config).double()
        start = parameters_to_vector(estimator.parameters()).detach().clone()
        start[:2] = torch.tensor([0.4, 0.3][:len(start)], dtype=torch.float64)  # the coefficients
        errors = []
        for seed in range(3):
            g, steps = offset_and_parameter_gradients(estimator, model, x, bias, start, seed)
            for direction, step, tolerance in parameter_directions(estimator):
                change = [offset_and_parameter_gradients(estimator, model, x, bias, start + sign * step * direction,
                                                         seed)[0] for sign in (1, -1)]
                expected = 2 * (g * (change[0] - change[1]) / (2 * step)).mean()
                errors.append(((steps @ direction - expected).abs() / expected.abs()).item() / tolerance)
        assert max(errors) < 1 if variant is cls else max(errors) > 1e3, (variant.__name__, errors)
    if not categorical:
        for z_dims, mc, iw, runtime in LEAVE_ONE_OUT_CASES:
            small = EnumerableModel(x_dim=3, z_dims=z_dims, seed=0).double()
            learned = cls(mc, iw, x_shape=(3,), **config).double()
            for parameter in learned.parameters():
                parameter.data.fill_(0.7)
            assert error(enumerate_estimator(learned, small, X, **runtime)[0], small, iw, **runtime) < 1e-12
