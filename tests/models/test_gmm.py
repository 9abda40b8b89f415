"""Gaussian mixture model: exact posterior, diagnostics, sampling."""
import math

import torch
from torch.distributions import Categorical

from ovis.models import get_model
from ovis.models.gmm import sample_mixture, true_logits

C = 20
PI_STAR = (5.0 + torch.arange(C)) / (5.0 + torch.arange(C)).sum()  # pi*_c proportional to 5 + c


def gmm(seed=0):
    torch.manual_seed(seed)
    return get_model("gmm", (1,), N=C)


def test_forward_shapes_and_parameter_names():
    model = gmm()
    assert {name.split(".")[0] for name, _ in model.named_parameters()} == {"log_theta", "phi"}
    x = torch.tensor([[0.0], [55.0], [190.0]])
    output = model(x)
    z = output["z"][0]
    assert z.shape == (3,) and z.dtype == torch.long
    assert output["qz"][0].log_prob(z).shape == output["pz"][0].log_prob(z).shape == (3,)
    assert output["px"].log_prob(x).shape == (3, 1)
    torch.testing.assert_close(output["px"].loc, 10.0 * z.float()[:, None])
    diagnostics = output["diagnostics"]
    assert diagnostics["gmm/posterior_distance"].shape == (3,) and diagnostics["gmm/prior_distance"].dim() == 0
    prior = model.sample_from_prior(5)
    assert prior["px"].sample().shape == (5, 1) and prior["z"][0].shape == (5,)
    torch.testing.assert_close(model.infer(x)[0].probs, output["qz"][0].probs)


def test_true_posterior_is_bayes_rule():
    model = gmm()
    x = torch.tensor([[-20.0], [12.0], [95.0], [400.0]])
    posterior = model.true_posterior(x)
    torch.testing.assert_close(posterior.sum(-1), torch.ones(4))
    c = torch.arange(C, dtype=torch.float32)
    log_joint = PI_STAR.log() - 0.5 * ((x - 10 * c) / 5) ** 2  # the 1/(5 sqrt(2 pi)) factor cancels
    torch.testing.assert_close(posterior, torch.softmax(log_joint, -1))
    assert posterior[3, -1] > 0.999 and posterior[0, 0] > 0.999  # far tails: the outermost cluster


def test_averaged_true_posterior_is_the_prior():
    """E_{x ~ p*}[p*(c | x)] = pi*_c (Monte Carlo, 5 standard errors)."""
    model = gmm()
    x = sample_mixture(100_000, true_logits(C), torch.Generator().manual_seed(0))  # [n, 1]
    posterior = model.true_posterior(x)  # [n, C]
    standard_error = posterior.std(0) / math.sqrt(len(x))
    assert ((posterior.mean(0) - PI_STAR).abs() < 5 * standard_error + 1e-6).all()


def test_samples_have_the_mixture_moments_and_the_marginal_integrates_to_one():
    x = sample_mixture(200_000, true_logits(C), torch.Generator().manual_seed(1)).double()
    c = torch.arange(C, dtype=torch.float64)
    mean = (PI_STAR.double() * 10 * c).sum()
    variance = (PI_STAR.double() * ((10 * c) ** 2 + 25)).sum() - mean ** 2
    assert abs(x.mean() - mean) < 5 * math.sqrt(variance / len(x))
    assert abs(x.var() / variance - 1) < 0.01
    model = gmm()
    with torch.no_grad():
        model.log_theta.copy_(true_logits(C))
    grid = torch.linspace(-60, 260, 20001)[:, None]
    density = model.log_marginal(grid).exp()
    assert abs(torch.trapezoid(density, grid[:, 0]) - 1) < 1e-4


def test_diagnostics_vanish_at_the_truth():
    model = gmm()
    x = torch.linspace(-10, 200, 50)[:, None]
    output = model(x)
    torch.testing.assert_close(output["diagnostics"]["gmm/posterior_distance"],
                               (output["qz"][0].probs - model.true_posterior(x)).norm(dim=-1))
    torch.testing.assert_close(output["diagnostics"]["gmm/prior_distance"], (torch.full((C,), 1 / C) - PI_STAR).norm())
    with torch.no_grad():
        model.log_theta.copy_(true_logits(C) + 3.0)  # logits are defined up to a constant
    model.q = lambda data: Categorical(probs=model.true_posterior(data))  # q = p*(z | x)
    diagnostics = model(x)["diagnostics"]
    assert diagnostics["gmm/posterior_distance"].abs().max() < 1e-6
    assert diagnostics["gmm/prior_distance"] < 1e-6
    torch.testing.assert_close(model.posterior(x), model.true_posterior(x))
