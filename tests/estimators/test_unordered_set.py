"""unordered-set against the exact gradient of the enumerable binary model, under the joint law of
sampling without replacement (``UnorderedSet.tuple_probabilities``, checked against the Gumbel
sampler's frequencies), and on average on the categorical VAE; a broken variant fails the check."""
import pytest
import torch

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

    def baselines(self, p, bound):
        weights, _ = super().baselines(p, bound)
        return weights, (p * bound).sum(1, keepdim=True).expand_as(bound)


def error(mean, model, iw, **runtime):
    exact = exact_gradients(model, model.exact_iw_bound(X, iw, **runtime).sum())
    return (flat(mean) - flat(exact)).abs().max().item()


@pytest.mark.parametrize("units,mc,iw,runtime", [(2, 2, 1, {}), (2, 3, 1, {"alpha": 0.3, "beta": 0.7}),
                                                 (3, 4, 1, {}), (2, 2, 2, {"freebits": 0.3})])
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


def test_unordered_set_on_a_categorical_vae_agrees_with_exact_on_average():
    """One unit of 5 categories, 3 of them drawn without replacement: the mean of 4000 gradients
    is within 5 standard errors of the exact gradient, coordinate by coordinate."""
    torch.manual_seed(0)
    model = get_model("vae", (3,), prior="categorical", N=1, K=5, hdim=4, nlayers=1, depth=1).double()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    ExactEnumeration(1, 1, x_shape=(3,)).double()(model, x)[0].mean().backward()
    target = torch.cat([p.grad.flatten() for p in model.parameters()])
    torch.manual_seed(1)
    z = batch_mean_z_scores(UnorderedSet(3, 1, x_shape=(3,)).double(), model, x, target)
    assert z.max() < 5, z.max()


@pytest.mark.parametrize("make,model,message", [
    (lambda: UnorderedSet(2, 1, x_shape=(3,)), lambda: EnumerableModel(x_dim=3, z_dims=(1, 1), seed=0),
     "1 stochastic layer"),
    (lambda: UnorderedSet(3, 1, x_shape=(3,)), lambda: EnumerableModel(x_dim=3, z_dims=(1,), seed=0),
     "only S\\^K = \\(2\\^1\\)\\^1 iw-tuples of latent states: use --mc 2 or fewer"),
    (lambda: UnorderedSet(2, 3, x_shape=(3,), max_elements=32), lambda: EnumerableModel(x_dim=3, z_dims=(2,), seed=0),
     "\\(2\\^2\\)\\^3 iw-tuples of latent states per data point, more than max_elements = 32"),
    (lambda: UnorderedSet(2, 1, x_shape=(3,)),
     lambda: get_model("vae", (3,), prior="normal", N=2, hdim=4, nlayers=1, depth=1), "gaussian latents"),
])
def test_models_it_cannot_serve_are_refused_before_any_work(make, model, message):
    model = model().double()
    with pytest.raises(ValueError, match=message):
        make().double()(model, X)
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("mc,message", [(1, "needs mc >= 2, got mc=1; use mc=2"), (5, "mc <= 4, got mc=5; use mc=4")])
def test_the_set_size_is_checked_with_the_fix(mc, message):
    with pytest.raises(ValueError, match=message):
        UnorderedSet(mc, 1)
