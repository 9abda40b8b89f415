"""The hierarchical VAE family: vae, shapes, gaussian-vae, sbm."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import OneHotCategoricalStraightThrough

from ovis.models import get_model
from ovis.models.distributions import GumbelSoftmaxCategorical

X_SHAPE = (1, 6, 5)


def binary_batch(rows, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand(rows, *X_SHAPE, generator=generator) < 0.3).float()


def log_densities(output, x):
    """Per-row log q, log p(z) (summed over layers) and log p(x|z)."""
    rows = x.shape[0]
    log_q = sum(q.log_prob(z).reshape(rows, -1).sum(1) for q, z in zip(output["qz"], output["z"]))
    log_p = sum(p.log_prob(z).reshape(rows, -1).sum(1) for p, z in zip(output["pz"], output["z"]))
    log_px = output["px"].log_prob(x).reshape(rows, -1).sum(1)
    return log_q, log_p, log_px


CONFIGS = [
    ("vae", dict(N=4, hdim=8, nlayers=1, depth=1, prior="normal"), (4,)),
    ("vae", dict(N=4, hdim=8, nlayers=2, depth=3, prior="normal", normalization="layernorm"), (4,)),
    ("vae", dict(N=4, hdim=8, nlayers=1, depth=2, prior="bernoulli", learn_prior=True), (4,)),
    ("vae", dict(N=4, K=3, hdim=8, nlayers=1, depth=2, prior="categorical", kdim=5), (4, 3)),
    ("vae", dict(N=4, hdim=8, nlayers=1, depth=1, normalization="batchnorm", dropout=0.1), (4,)),
    ("shapes", dict(N=4, K=3, hdim=8), (4, 3)),
    ("gaussian-vae", dict(N=4, hdim=8, nlayers=2, depth=2), (4,)),
    ("sbm", dict(N=4, depth=3, nlayers=0), (4,)),
    ("sbm", dict(N=4, depth=2, nlayers=1), (4,)),
]


@pytest.mark.parametrize("name,hparams,z_shape", CONFIGS)
def test_forward_and_prior_sample_shapes(name, hparams, z_shape):
    torch.manual_seed(0)
    model = get_model(name, X_SHAPE, x_mean=torch.full(X_SHAPE, 0.3), **hparams)
    depth = hparams.get("depth", 1)
    x = binary_batch(7)
    output = model(x, reparam=model.supports_reparam)
    assert len(output["z"]) == len(output["qz"]) == len(output["pz"]) == depth
    for z in output["z"]:
        assert z.shape == (7, *z_shape)
    log_q, log_p, log_px = log_densities(output, x)
    assert log_q.shape == log_p.shape == log_px.shape == (7,)
    assert torch.isfinite(log_q + log_p + log_px).all()
    assert (log_px < 0).all()

    model.eval()  # batchnorm with a single prior sample needs running statistics
    prior = model.sample_from_prior(3)
    assert len(prior["z"]) == len(prior["pz"]) == depth
    assert prior["px"].sample().shape == (3, *X_SHAPE)
    assert prior["px"].mean.shape == (3, *X_SHAPE)
    assert ((prior["px"].mean >= 0) & (prior["px"].mean <= 1)).all()


@pytest.mark.parametrize("name,hparams,z_shape", CONFIGS)
def test_given_latents_reproduce_the_sampled_pass(name, hparams, z_shape):
    """forward(x, z=z) evaluates q, p(z), p(x|z) at z: same values as the pass that drew z."""
    torch.manual_seed(1)
    model = get_model(name, X_SHAPE, **hparams).eval()
    x = binary_batch(5, seed=1)
    output = model(x)
    again = model(x, z=[z.clone() for z in output["z"]])
    for first, second in zip(log_densities(output, x), log_densities(again, x)):
        torch.testing.assert_close(first, second)
    infer = model.infer(x, z=output["z"])
    log_q = sum(q.log_prob(z).reshape(5, -1).sum(1) for q, z in zip(infer, output["z"]))
    torch.testing.assert_close(log_q, log_densities(output, x)[0])


def test_given_latents_are_checked():
    model = get_model("vae", X_SHAPE, N=4, depth=2)
    x = binary_batch(3)
    with pytest.raises(ValueError, match="list of 2 tensors"):
        model(x, z=[torch.zeros(3, 4)])
    with pytest.raises(ValueError, match="3 rows"):
        model(x, z=[torch.zeros(3, 4), torch.zeros(2, 4)])


def test_bernoulli_latents_refuse_reparam():
    for name, hparams in (("sbm", {}), ("vae", {"prior": "bernoulli"})):
        model = get_model(name, X_SHAPE, N=3, **hparams)
        assert not model.supports_reparam
        with pytest.raises(ValueError, match="reparam"):
            model(binary_batch(2), reparam=True)
    assert get_model("vae", X_SHAPE, prior="categorical").supports_reparam
    assert get_model("gaussian-vae", X_SHAPE).supports_reparam


def test_pathwise_gradient_reaches_the_encoder():
    torch.manual_seed(2)
    for prior in ("normal", "categorical"):
        model = get_model("vae", X_SHAPE, N=3, K=4, hdim=8, nlayers=1, depth=2, prior=prior)
        x = binary_batch(4)
        log_q, log_p, log_px = log_densities(model(x, reparam=True), x)
        (log_px + log_p).sum().backward()  # no log q: the encoder gets gradients through z only
        first_encoder = model.inference_network[0].net[0].weight
        assert first_encoder.grad is not None and first_encoder.grad.abs().sum() > 0


def test_exact_log_densities_of_a_one_layer_gaussian_vae():
    """log q, log p(z), log p(x|z) against hand-written formulas from the module's weights."""
    torch.manual_seed(3)
    model = get_model("vae", X_SHAPE, N=3, hdim=8, nlayers=0, depth=1, prior="normal")
    x = binary_batch(4)
    output = model(x)
    z = output["z"][0]
    encoder = model.inference_network[0].net
    params = encoder(x.flatten(1)).view(4, 3, 2)
    mu, sigma = params[..., 0], params[..., 1].exp()
    log_q = (-0.5 * ((z - mu) / sigma) ** 2 - sigma.log() - 0.5 * math.log(2 * math.pi)).sum(1)
    log_p = (-0.5 * z ** 2 - 0.5 * math.log(2 * math.pi)).sum(1)
    logits = model.generative_model.observation(z)
    log_px = (x.flatten(1) * F.logsigmoid(logits) + (1 - x.flatten(1)) * F.logsigmoid(-logits)).sum(1)
    for expected, actual in zip((log_q, log_p, log_px), log_densities(output, x)):
        torch.testing.assert_close(actual, expected)


def test_sbm_follows_the_tvo_architecture():
    torch.manual_seed(4)
    x_mean = torch.rand(X_SHAPE) * 0.5
    model = get_model("sbm", X_SHAPE, x_mean=x_mean, N=4, depth=3, nlayers=0)
    names = {name for name, _ in model.named_parameters()}
    assert all(n.startswith(("generative_model.", "inference_network.")) for n in names)
    assert "generative_model.prior_params" in names  # the top prior is learnt
    # output bias starts at logit(clip(mean)): the untrained decoder of z = 0 ... up to the weights
    bias = model.generative_model.observation.bias
    torch.testing.assert_close(torch.sigmoid(bias), x_mean.flatten().clamp(1e-4, 1 - 1e-4))
    x = binary_batch(3)
    output = model(x)
    z0, z1, z2 = output["z"]
    assert set(torch.cat([z0, z1, z2]).unique().tolist()) <= {0.0, 1.0}
    inference = model.inference_network
    torch.testing.assert_close(output["qz"][2].logits, inference[0].net((x.flatten(1) - x_mean.flatten() + 1) / 2).view(3, 4))
    torch.testing.assert_close(output["qz"][1].logits, inference[1].net(2 * z2 - 1))
    torch.testing.assert_close(output["qz"][0].logits, inference[2].net(2 * z1 - 1))
    generative = model.generative_model
    torch.testing.assert_close(output["pz"][1].logits, generative.conditionals[0].net(2 * z0 - 1))
    torch.testing.assert_close(output["px"].logits, generative.observation(2 * z2 - 1).view(3, *X_SHAPE))
    torch.testing.assert_close(output["pz"][0].logits, torch.zeros(3, 4))


def test_learn_prior_decides_whether_the_prior_is_a_parameter():
    learnt = get_model("vae", X_SHAPE, prior="categorical", learn_prior=True)
    fixed = get_model("vae", X_SHAPE, prior="categorical", learn_prior=False)
    assert "generative_model.prior_params" in dict(learnt.named_parameters())
    assert "generative_model.prior_params" not in dict(fixed.named_parameters())
    assert "generative_model.prior_params" in dict(fixed.named_buffers())
    prior = fixed.sample_from_prior(2)["pz"][0]
    torch.testing.assert_close(prior.probs, torch.full((2, 32, 8), 1 / 8))


def test_decoder_bias_starts_at_the_data_mean():
    x_mean = torch.linspace(0, 1, math.prod(X_SHAPE)).view(X_SHAPE)
    model = get_model("gaussian-vae", X_SHAPE, x_mean=x_mean, N=2, hdim=4, nlayers=1)
    bias = model.generative_model.observation[-1].bias
    torch.testing.assert_close(torch.sigmoid(bias), x_mean.flatten().clamp(1e-4, 1 - 1e-4))


def test_categorical_latents_are_one_hot_and_relaxed_with_tau():
    torch.manual_seed(5)
    model = get_model("vae", X_SHAPE, N=3, K=4, prior="categorical")
    x = binary_batch(6)
    hard = model(x, reparam=True, tau=0.0)["z"][0]
    assert torch.equal(hard.sum(-1), torch.ones(6, 3)) and set(hard.unique().tolist()) == {0.0, 1.0}
    soft = model(x, reparam=True, tau=1.0)["z"][0]
    torch.testing.assert_close(soft.sum(-1), torch.ones(6, 3))
    assert ((soft > 0) & (soft < 1)).all()
    assert isinstance(model(x)["qz"][0], OneHotCategoricalStraightThrough)
    original = get_model("vae", X_SHAPE, N=3, K=4, prior="categorical", reproduce_original=True)
    assert isinstance(original(x)["qz"][0], GumbelSoftmaxCategorical)


@pytest.mark.parametrize("name, hparams", [("sbm", dict(N=4, depth=3, nlayers=0)),
                                           ("gaussian-vae", dict(N=4, hdim=8, nlayers=2, depth=2)),
                                           ("vae", dict(N=4, hdim=8, nlayers=1, normalization="batchnorm"))])
def test_x_given_once_shares_the_first_inference_layer_without_changing_results(name, hparams):
    """``forward(x, particles=4)`` runs the first layer once per data point; samples,
    log-densities and gradients equal those of the same data repeated row by row."""
    x = binary_batch(3)
    results = []
    for once in (True, False):
        torch.manual_seed(0)
        model = get_model(name, X_SHAPE, **hparams)
        seen = []
        first = model.inference_network[0].net
        (first if isinstance(first, torch.nn.Linear) else first[0]).register_forward_hook(
            lambda module, args, output: seen.append(args[0].shape[0]))
        torch.manual_seed(1)
        rows = x.repeat_interleave(4, dim=0)  # [12, *X_SHAPE]
        output = model(x, particles=4, reparam=model.supports_reparam) if once else \
            model(rows, reparam=model.supports_reparam)
        densities = log_densities(output, rows)
        sum(d.sum() for d in densities).backward()
        assert seen == [3 if once else 12]
        results.append((output["z"], densities, [p.grad for p in model.parameters()]))
    (z, densities, grads), (z_rows, densities_rows, grads_rows) = results
    for a, b in zip(z + list(densities) + grads, z_rows + list(densities_rows) + grads_rows):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)  # float32 sums in another order


def test_dropout_draws_a_mask_per_particle():
    """Dropout needs the repeated rows (one mask per particle); other networks share the layer."""
    assert get_model("sbm", X_SHAPE, N=4, depth=2).shares_first_layer
    assert get_model("vae", X_SHAPE, N=4, hdim=8, nlayers=1, normalization="batchnorm").shares_first_layer
    model = get_model("vae", X_SHAPE, N=4, hdim=8, nlayers=1, dropout=0.1)
    assert not model.shares_first_layer
    seen = []
    model.inference_network[0].net[0].register_forward_hook(lambda m, args, out: seen.append(args[0].shape[0]))
    assert model(binary_batch(3), particles=4)["z"][0].shape[0] == 12 and seen == [12]
