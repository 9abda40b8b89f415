"""One optimisation step of every model with the paper's estimators (CPU)."""
import pytest
import torch

from ovis.estimators.config import parse_estimator_id
from ovis.models import get_model

IMAGE = (1, 6, 6)


def image_batch(bs, seed=0):
    return (torch.rand(bs, *IMAGE, generator=torch.Generator().manual_seed(seed)) < 0.3).float()


def toy_batch(bs, seed=0):
    return torch.randn(bs, 20, generator=torch.Generator().manual_seed(seed)) + 1.0


def gmm_batch(bs, seed=0):
    return 10 * torch.randint(0, 20, (bs, 1), generator=torch.Generator().manual_seed(seed)).float()


# name, hyper-parameters, batch factory, x_shape
MODELS = {
    "vae-normal": ("vae", dict(N=3, hdim=8, nlayers=1, depth=2), image_batch, IMAGE),
    "vae-bernoulli": ("vae", dict(N=3, hdim=8, nlayers=1, prior="bernoulli", learn_prior=True), image_batch, IMAGE),
    "vae-categorical": ("vae", dict(N=3, K=4, hdim=8, nlayers=1, prior="categorical", kdim=2), image_batch, IMAGE),
    "shapes": ("shapes", dict(N=3, K=4, hdim=8), lambda bs, seed=0: image_batch(bs, seed).expand(bs, 3, 6, 6),
               (3, 6, 6)),
    "gaussian-vae": ("gaussian-vae", dict(N=3, hdim=8, nlayers=1, depth=2, learn_prior=True), image_batch, IMAGE),
    "sbm": ("sbm", dict(N=5, depth=3, nlayers=0), image_batch, IMAGE),
    "gaussian-toy": ("gaussian-toy", {}, toy_batch, (20,)),
    "gmm": ("gmm", dict(N=20), gmm_batch, (1,)),
}
PATHWISE_MODELS = ("vae-normal", "gaussian-vae", "gaussian-toy")


def build(key):
    name, hparams, batch, x_shape = MODELS[key]
    x = batch(4)
    torch.manual_seed(0)
    model = get_model(name, x_shape, x_mean=x.mean(0), **hparams)
    return model, x


def train_step(model, x, estimator_id, iw=3, mc=2):
    Estimator, config = parse_estimator_id(estimator_id)
    estimator = Estimator(mc=mc, iw=iw, x_shape=tuple(x.shape[1:]), **config)
    estimator.check_model(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss, diagnostics, _ = estimator(model, x)
    assert loss.shape == (x.shape[0],) and torch.isfinite(loss).all()
    loss.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"{name} got no finite gradient"
    optimizer.step()
    changed = [name for name, p in model.named_parameters() if not torch.equal(p, before[name])]
    assert changed, "no parameter moved"
    assert torch.isfinite(diagnostics["loss/L_k"]).all()
    return diagnostics, changed


@pytest.mark.parametrize("key", list(MODELS))
def test_ovis_gamma1_step(key):
    model, x = build(key)
    diagnostics, changed = train_step(model, x, "ovis-gamma1")
    assert any(n.startswith(("inference_network", "phi", "A", "b")) for n in changed)
    if key == "gmm":
        assert {"gmm/posterior_distance", "gmm/prior_distance"} <= set(diagnostics)
    if key == "gaussian-toy":
        assert "gaussian_toy/distance_phi" in diagnostics


@pytest.mark.parametrize("key", PATHWISE_MODELS)
def test_pathwise_iwae_step(key):
    model, x = build(key)
    train_step(model, x, "pathwise-iwae")


@pytest.mark.parametrize("key", ["sbm", "vae-normal", "gmm"])
def test_wake_sleep_step(key):
    """The sleep phase evaluates q at latents drawn from the prior (``infer(x, z=...)``)."""
    model, x = build(key)
    diagnostics, _ = train_step(model, x, "wake-sleep")
    assert torch.isfinite(diagnostics["rws/sleep_log_q"]).all()


def test_discrete_models_refuse_pathwise_estimators():
    for key in ("sbm", "gmm", "vae-bernoulli"):
        model, _ = build(key)
        Estimator, config = parse_estimator_id("pathwise-iwae")
        with pytest.raises(ValueError, match="supports_reparam"):
            Estimator(mc=1, iw=2, **config).check_model(model)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_every_model_trains_on_cuda():
    for key in MODELS:
        model, x = build(key)
        model, x = model.cuda(), x.cuda()
        train_step(model, x, "pathwise-iwae" if key in PATHWISE_MODELS else "ovis-gamma1")
        assert model.sample_from_prior(3)["px"].sample().device.type == "cuda"
        if key == "gaussian-toy":
            model.perturb(0.01, torch.Generator().manual_seed(0))
            assert model.A.device.type == "cuda"
