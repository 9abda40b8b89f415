"""The estimators' side of the model protocol: x given once, samplers, per-particle log-densities."""
import pytest
import torch

from ovis.estimators.particles import RuntimeOptions, sample_particles
from ovis.models import get_model
from ovis.estimators.relaxations import NoiseSampler
from ovis.testing import EnumerableModel

from .helpers import build

X_SHAPE = (1, 4, 4)


def _gradients(model, estimator, x, seed):
    model.zero_grad()
    torch.manual_seed(seed)
    loss, diagnostics, _ = estimator(model, x)
    loss.mean().backward()
    return [p.grad.clone() for p in model.parameters()], diagnostics["loss/L_k"]


@pytest.mark.parametrize("estimator_id", ["ovis-gamma1", "vimco-arithmetic", "pathwise-iwae"])
def test_x_given_once_gives_the_gradients_of_repeated_rows(estimator_id):
    """The shared first layer (accepts_particles) is exact: same draws, same gradients."""
    torch.manual_seed(0)
    prior = "normal" if estimator_id.startswith("pathwise") else "bernoulli"
    model = get_model("vae", X_SHAPE, N=3, hdim=8, nlayers=1, depth=2, prior=prior)
    x = (torch.rand(3, *X_SHAPE, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    estimator = build(estimator_id, mc=2, iw=4)
    once, bound_once = _gradients(model, estimator, x, seed=5)
    model.accepts_particles = False  # the instance now takes repeated rows
    rows, bound_rows = _gradients(model, estimator, x, seed=5)
    torch.testing.assert_close(bound_once, bound_rows)
    for a, b in zip(once, rows):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_loss_from_log_probs_equals_the_model_path(enumerable):
    """Per-particle log-densities in, the same loss and gradients as estimator(model, x)."""
    model, x = enumerable
    estimator = build("ovis-gamma1", mc=2, iw=3)
    options = RuntimeOptions()
    torch.manual_seed(0)
    particles = sample_particles(model, x, 2, 3, False, options)
    z = particles.output["z"]
    with model.fixed_latents(z):
        loss, diagnostics, _ = estimator(model, x)
    expected = torch.autograd.grad(loss.mean(), list(model.parameters()), allow_unused=True)
    with model.fixed_latents(z):
        again = sample_particles(model, x, 2, 3, False, options)
    log_p = again.log_px + again.log_pz.sum(-1)  # [1, 2, 3]
    log_q = again.log_qz.sum(-1)  # [1, 2, 3]
    functional, functional_diagnostics = estimator.loss_from_log_probs(log_p, log_q)
    got = torch.autograd.grad(functional.mean(), list(model.parameters()), allow_unused=True)
    torch.testing.assert_close(functional, loss)
    torch.testing.assert_close(functional_diagnostics["loss/L_k"], diagnostics["loss/L_k"])
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b)


def test_loss_from_log_probs_refuses_what_it_cannot_do():
    log_p = torch.zeros(2, 1, 4)
    with pytest.raises(ValueError, match="estimator\\(model, x\\)"):
        build("wake-sleep", iw=4).loss_from_log_probs(log_p, log_p)
    with pytest.raises(ValueError, match="beta=1"):
        build("ovis-gamma1", iw=4).loss_from_log_probs(log_p, log_p, beta=0.5)
    with pytest.raises(ValueError, match="particle layout"):
        build("ovis-gamma1", iw=5).loss_from_log_probs(log_p, log_p)
    with pytest.raises(ValueError, match="unsqueeze"):
        build("ovis-gamma1", iw=4).loss_from_log_probs(log_p[:, 0], log_p[:, 0])


def test_a_sampler_needs_a_model_that_accepts_it():
    class Plain(EnumerableModel):
        accepts_sampler = False
    with pytest.raises(ValueError, match="forward\\(x, sampler=...\\)"):
        sample_particles(Plain(), torch.ones(1, 3), 1, 2, False, RuntimeOptions(), sampler=NoiseSampler())


def test_the_probe_cache_tells_a_new_model_from_a_freed_one_at_the_same_address(monkeypatch):
    """A freed model's address (``id``) may go to the next model allocated: that model must be
    probed too. ``id`` is made to give every object one address in ``ovis.estimators.base``, as
    if each model were allocated where the last one was freed; the estimator does not keep a
    probed model alive either."""
    import gc
    import weakref

    import ovis.estimators.base as base

    monkeypatch.setattr(base, "id", lambda obj: 0, raising=False)
    estimator = build("disarm", iw=1, x_shape=(3,))
    probes = []
    monkeypatch.setattr(estimator, "probe_pass", lambda model, sampler=None: probes.append(model) or {"z": [0]})
    first = EnumerableModel(x_dim=3, z_dims=(2,), seed=0)
    estimator.check_model(first)
    estimator.check_model(first)
    assert probes == [first]
    freed = weakref.ref(first)
    del first
    probes.clear()
    gc.collect()
    assert freed() is None
    second = EnumerableModel(x_dim=3, z_dims=(2,), seed=1)
    estimator.check_model(second)
    assert probes == [second]
