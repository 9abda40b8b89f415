"""Particle layout, shapes, batch independence, diagnostics and input validation."""
import math

import pytest
import torch
from torch.distributions import Independent, Normal

from ovis.estimators import BoundEvaluator, parse_estimator_id
from ovis.estimators.particles import expand_particles, iw_bound
from ovis.estimators.config import EXAMPLE_IDS
from ovis.estimators.vimco import vimco_control_variate
from ovis.testing import EnumerableModel, LinearGaussianModel

from .helpers import build, enumerable_model_for

BASE_KEYS = {"loss/L_k", "loss/elbo", "loss/nll", "loss/kl", "loss/kl_q_p", "loss/ess"}


def model_for(estimator_id):
    if parse_estimator_id(estimator_id)[0].reparam:
        return LinearGaussianModel(dim=3, seed=0)
    return enumerable_model_for(parse_estimator_id(estimator_id)[0], seed=0)


def batch_for(model, bs):
    torch.manual_seed(0)
    if isinstance(model, LinearGaussianModel):
        return torch.randn(bs, 3)
    return (torch.rand(bs, 3) < 0.5).float()


def test_expansion_order_is_batch_then_mc_then_iw():
    x = torch.arange(2 * 3).view(2, 3).float()
    rows = expand_particles(x, mc=2, iw=4)  # [16, 3]
    assert rows.shape == (16, 3)
    assert torch.equal(rows.view(2, 2, 4, 3), x[:, None, None].expand(2, 2, 4, 3))


class RecordingModel(EnumerableModel):
    def forward(self, x, reparam=False, **kwargs):
        self.seen = x
        self.kwargs = kwargs
        return super().forward(x, reparam, **kwargs)


def test_one_forward_pass_on_the_expanded_batch_with_runtime_options_only():
    model = RecordingModel(x_dim=3, z_dims=(2,))
    x = torch.tensor([[0.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    build("ovis-gamma1", mc=2, iw=3)(model, x, alpha=0.5)
    assert torch.equal(model.seen, expand_particles(x, 2, 3))
    assert model.kwargs == {"alpha": 0.5, "beta": 1.0, "tau": 0.0}


@pytest.mark.parametrize("mc,iw", [(1, 1), (3, 1), (1, 4), (2, 3)])
@pytest.mark.parametrize("estimator_id", EXAMPLE_IDS)
def test_shapes_for_every_estimator(estimator_id, mc, iw):
    Estimator, config = parse_estimator_id(estimator_id)
    too_few = mc < Estimator.min_mc or iw < Estimator.min_iw
    if too_few or estimator_id in ("ovis-S1", "ovis-S0.5") and iw == 1:  # without -exclusive: S of the K
        with pytest.raises(ValueError):
            Estimator(mc=mc, iw=iw, **config)
        return
    model = model_for(estimator_id)
    x = batch_for(model, 5)
    estimator = Estimator(mc=mc, iw=iw, x_shape=x.shape[1:], **config)
    estimator.check_model(model)
    loss, diagnostics, output = estimator(model, x)
    assert loss.shape == (5,) and torch.isfinite(loss).all()
    assert BASE_KEYS <= set(diagnostics)
    for key, value in diagnostics.items():
        assert value.shape in ((5,), ()), key
        assert torch.isfinite(value).all(), key
    assert output["z"][0].shape[0] == 5 * math.prod(estimator.layout)
    loss.mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_vimco_k1_control_variate_has_the_particle_shape():
    """The original's VIMCO at K = 1 returned [bs, mc]; it must be [bs, mc, 1] (zeros)."""
    control_variate = vimco_control_variate(torch.randn(4, 3, 1))
    assert control_variate.shape == (4, 3, 1) and torch.all(control_variate == 0)


def test_diagnostics_values():
    model = EnumerableModel(x_dim=3, z_dims=(2,), seed=0).double()
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    torch.manual_seed(0)
    z = [(torch.rand(2 * 2 * 3, 2) < 0.5).double()]  # [bs * mc * iw, 2]
    with model.fixed_latents(z):
        _, diagnostics, output = build("vimco-arithmetic", mc=2, iw=3)(model, x, beta=0.5)
    log_px = output["px"].log_prob(expand_particles(x, 2, 3)).sum(-1).view(2, 2, 3)
    kl = (output["qz"][0].log_prob(z[0]) - output["pz"][0].log_prob(z[0])).sum(-1).view(2, 2, 3)
    log_weights = log_px - 0.5 * kl
    expected_bound = iw_bound(log_weights).mean(1)
    ess = (log_weights.exp().sum(-1) ** 2 / (2 * log_weights).exp().sum(-1)).mean(1)
    expected = {"loss/L_k": expected_bound, "loss/elbo": log_weights.mean((1, 2)), "loss/nll": -log_px.mean((1, 2)),
                "loss/kl": 0.5 * kl.mean((1, 2)), "loss/kl_q_p": expected_bound - log_weights.mean((1, 2)),
                "loss/ess": ess, "testing/latent_mean": z[0].mean(1).view(2, 6).mean(1)}
    for key, value in expected.items():
        assert torch.allclose(diagnostics[key], value.detach()), key


@pytest.mark.parametrize("estimator_id", ["reinforce", "vimco-geometric", "ovis-gamma1", "ovis-S2-exclusive", "ovis-S1",
                                          "wake-wake", "tvo-part3-beta2", "reinforce-baseline"])
def test_batch_equals_one_data_point_at_a_time(estimator_id):
    """Per-data-point bound, loss and gradients of a batch equal those of each point alone, given
    the same latents (no reduction over the batch before the logsumexp over particles)."""
    model = EnumerableModel(x_dim=3, z_dims=(2, 1), seed=3).double()
    estimator = build(estimator_id, mc=2, iw=3, x_shape=(3,)).double().eval()
    mc, n = estimator.layout
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    torch.manual_seed(0)
    z = [(torch.rand(3 * mc * n, d) < 0.5).double() for d in (2, 1)]
    with model.per_datum_parameters(3) as copies, model.fixed_latents(z):
        loss, diagnostics, _ = estimator(model, x)
        loss.sum().backward()
    rows = mc * n
    for b in range(3):
        model.zero_grad()
        with model.fixed_latents([zg[b * rows:(b + 1) * rows] for zg in z]):
            single_loss, single_diagnostics, _ = estimator(model, x[b:b + 1])
            single_loss.sum().backward()
        assert torch.allclose(loss[b], single_loss[0], atol=1e-12)
        assert torch.allclose(diagnostics["loss/L_k"][b], single_diagnostics["loss/L_k"][0], atol=1e-12)
        for name, p in model.named_parameters():
            assert torch.allclose(copies[name].grad[b], p.grad, atol=1e-12), name


@pytest.mark.parametrize("estimator_id", ["pathwise", "pathwise-iwae", "stl", "dreg"])
def test_batch_equals_one_data_point_at_a_time_pathwise(estimator_id):
    model = LinearGaussianModel(dim=2, seed=1).double()
    estimator = build(estimator_id, mc=2, iw=3)
    mc, n = estimator.layout
    x = torch.tensor([[0.3, -1.0], [2.0, 0.5]], dtype=torch.float64)
    eps = torch.randn(2 * mc * n, 2, dtype=torch.float64)
    with model.per_datum_parameters(2) as copies, model.fixed_noise(eps):
        loss, _, _ = estimator(model, x, alpha=0.3)
        loss.sum().backward()
    for b in range(2):
        model.zero_grad()
        with model.fixed_noise(eps[b * mc * n:(b + 1) * mc * n]):
            single_loss, _, _ = estimator(model, x[b:b + 1], alpha=0.3)
            single_loss.sum().backward()
        assert torch.allclose(loss[b], single_loss[0], atol=1e-12)
        for name, p in model.named_parameters():
            assert torch.allclose(copies[name].grad[b], p.grad, atol=1e-12), name


class ShapedLatentModel(LinearGaussianModel):
    """The linear Gaussian model with its latent vector viewed as ``[rows, 2, 3]`` (event dims 2)."""

    def forward(self, x, reparam=False, **kwargs):
        output = super().forward(x, reparam, **kwargs)
        q = output["qz"][0].base_dist
        rows = x.shape[0]
        z = output["z"][0].view(rows, 2, 3)
        shaped_q = Independent(Normal(q.loc.view(rows, 2, 3), q.scale.view(rows, 2, 3)), 2)
        shaped_p = Independent(Normal(output["pz"][0].base_dist.loc.view(rows, 2, 3), 1.0), 2)
        return {"px": Independent(Normal(z.view(rows, 6), 1.0), 1), "z": [z], "qz": [shaped_q], "pz": [shaped_p]}


def test_dreg_works_for_latents_of_any_shape():
    flat_model, shaped_model = LinearGaussianModel(dim=6, seed=2).double(), ShapedLatentModel(dim=6, seed=2).double()
    x = torch.randn(2, 6, dtype=torch.float64)
    eps = torch.randn(2 * 4, 6, dtype=torch.float64)
    grads = []
    for model in (flat_model, shaped_model):
        with model.fixed_noise(eps):
            build("dreg", iw=4)(model, x, backward=True)
        grads.append([p.grad for p in model.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-12)


class TwoGroupModel(LinearGaussianModel):
    """Two latent groups: the latent vector split in halves."""

    def forward(self, x, reparam=False, **kwargs):
        output = super().forward(x, reparam, **kwargs)
        q, p, z = output["qz"][0].base_dist, output["pz"][0].base_dist, output["z"][0]
        halves = lambda t: t.chunk(2, dim=1)
        return {"px": output["px"], "z": list(halves(z)),
                "qz": [Independent(Normal(loc, scale), 1) for loc, scale in zip(halves(q.loc), halves(q.scale))],
                "pz": [Independent(Normal(loc, 1.0), 1) for loc in halves(p.loc)]}


def test_stl_and_dreg_refuse_several_latent_groups_but_pathwise_works():
    model = TwoGroupModel(dim=4)
    x = torch.randn(3, 4)
    loss, diagnostics, _ = build("pathwise-iwae", iw=2)(model, x)
    assert loss.shape == (3,)
    for estimator_id in ("stl", "dreg"):
        with pytest.raises(ValueError, match="one latent group"):
            build(estimator_id, iw=2)(model, x)
        Estimator, config = parse_estimator_id(estimator_id)
        with pytest.raises(ValueError, match="this model has 2"):  # before training, from a probe pass
            Estimator(iw=2, x_shape=(4,), **config).check_model(model)


def test_input_validation():
    model = EnumerableModel(x_dim=3)
    x = torch.ones(2, 3)
    with pytest.raises(ValueError, match="supports_reparam"):
        build("pathwise-iwae", iw=2)(model, x)
    with pytest.raises(ValueError, match="unknown runtime option"):
        build("reinforce", iw=2)(model, x, gamma=1.0)
    with pytest.raises(ValueError, match="alpha"):
        build("reinforce", iw=2)(model, x, alpha=1.0)
    with pytest.raises(ValueError, match="free bits"):
        build("dreg", iw=2)(LinearGaussianModel(), torch.ones(2, 2), freebits=0.1)

    class NoInference(EnumerableModel):
        infer = None

    with pytest.raises(ValueError, match="infer"):
        build("wake-sleep", iw=2)(NoInference(), x)

    class NoLatents(EnumerableModel):
        def forward(self, x, reparam=False, **kwargs):
            output = super().forward(x, reparam, **kwargs)
            del output["qz"]
            return output

    with pytest.raises(ValueError, match="qz"):
        build("reinforce", iw=2)(NoLatents(), x)


def test_backward_and_runtime_defaults():
    model = EnumerableModel(x_dim=3)
    x = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    estimator = build("ovis-gamma1", iw=5, beta=0.5)
    torch.manual_seed(0)
    loss, _, _ = estimator(model, x, backward=True)
    grads = [p.grad.clone() for p in model.parameters()]
    assert all(g.abs().sum() > 0 for g in grads)
    model.zero_grad()
    torch.manual_seed(0)
    estimator(model, x, beta=0.5)[0].mean().backward()  # the constructor default equals the call
    assert all(torch.equal(a, p.grad) for a, p in zip(grads, model.parameters()))
    _, diagnostics, _ = estimator(model, x, return_diagnostics=False)
    assert diagnostics == {}


def test_neural_baseline_is_trained_by_its_squared_error():
    model = EnumerableModel(x_dim=3)
    estimator = build("reinforce-baseline", iw=3, x_shape=(3,))
    parameters = list(estimator.parameters())
    assert parameters
    x = (torch.rand(8, 3) < 0.5).float()
    loss, diagnostics, _ = estimator(model, x, backward=True)
    assert all(p.grad is not None for p in parameters) and "control_variate/mse" in diagnostics
    optimizer = torch.optim.Adam(estimator.parameters(), lr=5e-2)
    torch.manual_seed(0)
    errors = []
    for _ in range(150):
        optimizer.zero_grad()
        _, diagnostics, _ = estimator(model, x, backward=True)
        optimizer.step()
        errors.append(diagnostics["control_variate/mse"].mean().item())
    assert sum(errors[-20:]) < 0.5 * sum(errors[:20])


def test_bound_evaluator_is_the_plain_bound():
    model = EnumerableModel(x_dim=3)
    with pytest.raises(ValueError):
        BoundEvaluator(iw=10)(model, torch.ones(2, 3), alpha=0.5)
