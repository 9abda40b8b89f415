"""Numerical stability: many particles, huge log-weights, -inf log-weights."""
import pytest
import torch

from ovis.estimators import BoundEvaluator, RuntimeOptions
from ovis.estimators.particles import Particles
from ovis.estimators.config import EXAMPLE_IDS, parse_estimator_id
from ovis.estimators.ovis import ovis_asymptotic_control_variate
from ovis.estimators.particles import iw_bound, normalized_weights
from ovis.testing import EnumerableModel

from .helpers import build

# estimators whose surrogate works on log-densities alone (no model, no hooks on latents)
SURROGATE_IDS = [eid for eid in EXAMPLE_IDS if not any(getattr(parse_estimator_id(eid)[0], need) for need in (
    "needs_model", "needs_latents", "baseline_options"))]


def particles(log_px, groups=1):
    """Leaf log-densities requiring gradients: log p(x|z) as given, random log q and log p(z)."""
    bs, mc, iw = log_px.shape
    torch.manual_seed(0)
    log_qz = (-torch.rand(bs, mc, iw, groups, dtype=log_px.dtype) * 3).requires_grad_()
    log_pz = (-torch.rand(bs, mc, iw, groups, dtype=log_px.dtype) * 3).requires_grad_()
    return Particles(log_px.requires_grad_(), log_qz, log_pz, {"z": []})


def run_surrogate(estimator_id, log_px, iw, **runtime):
    min_mc = parse_estimator_id(estimator_id)[0].min_mc  # outer samples repeated up to it
    log_px = log_px.repeat(1, -(-min_mc // log_px.shape[1]), 1)[:, :max(min_mc, log_px.shape[1])]
    estimator = build(estimator_id, mc=log_px.shape[1], iw=iw)
    extra = estimator.layout[1] - iw  # auxiliary particles of exclusive OVIS-MC: copies of the first ones
    p = particles(torch.cat([log_px, log_px[..., :extra]], dim=2) if extra > 0 else log_px)
    loss, diagnostics = estimator.surrogate(None, None, p, RuntimeOptions(**runtime))
    grads = torch.autograd.grad(loss.sum(), [p.log_px, p.log_qz, p.log_pz], allow_unused=True)
    return loss, diagnostics, grads


def assert_finite(loss, diagnostics, grads):
    assert torch.isfinite(loss).all()
    assert all(torch.isfinite(v).all() for v in diagnostics.values())
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("estimator_id", SURROGATE_IDS)
def test_log_weights_of_size_1e4(estimator_id, dtype):
    torch.manual_seed(1)
    log_px = torch.randn(3, 2, 6, dtype=dtype) * 1e4
    assert_finite(*run_surrogate(estimator_id, log_px, iw=6))


def minus_infinity_cases():
    """Some particles with p(x|z) = 0, and a pair with one finite particle (VIMCO's leave-one-out
    control variate of the finite one cannot be formed)."""
    log_px = torch.randn(2, 2, 4, dtype=torch.float64)
    log_px[0, 0, [0, 2]] = float("-inf")
    log_px[1, :, 1:] = float("-inf")
    return [(log_px, 4), (torch.tensor([[[0.5, float("-inf")]]], dtype=torch.float64), 2)]


@pytest.mark.parametrize("estimator_id", [eid for eid in SURROGATE_IDS
                                          if not eid.startswith("tvo")])
def test_minus_infinity_log_weights_give_finite_values(estimator_id):
    for log_px, iw in minus_infinity_cases():
        assert_finite(*run_surrogate(estimator_id, log_px, iw=iw))


@pytest.mark.parametrize("estimator_id", ["tvo", "tvo-part5-beta2-trapz"])
def test_minus_infinity_log_weights_give_no_nan(estimator_id):
    """The TVO's term at beta_0 = 0 averages the log-weights (an ELBO): it is -inf when a particle
    has p(x|z) = 0, so the loss is +inf, never NaN, and the other data points keep finite values."""
    for log_px, iw in minus_infinity_cases():
        loss, diagnostics, _ = run_surrogate(estimator_id, log_px, iw=iw)
        assert not torch.isnan(loss).any()
        assert all(not torch.isnan(v).any() for v in diagnostics.values())
    finite = torch.randn(1, 2, 4, dtype=torch.float64)
    loss, _, grads = run_surrogate(estimator_id, torch.cat([finite, minus_infinity_cases()[0][0]]), iw=4)
    assert torch.isfinite(loss[0]) and torch.isinf(loss[1:]).all()


def test_ovis_clipping_with_one_dominant_weight():
    for dtype in (torch.float32, torch.float64):
        l = torch.tensor([0.0, 1e4, -1e4, 5.0], dtype=dtype)
        c = ovis_asymptotic_control_variate(l, iw_bound(l), normalized_weights(l), 1.0)
        assert torch.isfinite(c).all()
        eps = torch.finfo(dtype).eps
        assert c[1] >= iw_bound(l) + torch.log(torch.tensor(eps, dtype=dtype)) - 1.0  # clipped, not -inf


@pytest.mark.parametrize("estimator_id", ["ovis-gamma1", "vimco-arithmetic", "ovis-S10-exclusive", "tvo-part2-config1",
                                          "reinforce", "wake-wake"])
def test_5000_particles_on_a_model(estimator_id):
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=0)  # q close to p(z|x): L_5000 within ~0.01 of log p(x)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]])
    loss, diagnostics, _ = build(estimator_id, iw=5000)(model, x, backward=True)
    assert torch.isfinite(loss).all() and all(torch.isfinite(v).all() for v in diagnostics.values())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert torch.allclose(diagnostics["loss/L_k"], model.exact_log_marginal(x), atol=0.05)


def test_bound_evaluator_with_5000_particles_in_chunks():
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=0)
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    loss, diagnostics, _ = BoundEvaluator(iw=5000, chunk_size=1000)(model, x)
    assert torch.allclose(-loss, model.exact_log_marginal(x).detach(), atol=0.05)
    assert torch.all(diagnostics["loss/ess"] <= 5000)
