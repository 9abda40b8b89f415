"""Gaussian toy model: closed forms against Monte Carlo, optimum, perturbation."""
import math

import pytest
import torch

from ovis.datasets.gaussian_toy import sample_toy_data
from ovis.models import get_model


def toy(D=20, n_points=1024, seed=0, **hparams):
    x = sample_toy_data(n_points, D)
    torch.manual_seed(seed)
    return get_model("gaussian-toy", (D,), x_mean=x.mean(0), **hparams).double(), x.double()


def log_joint(model, x, z):
    return (model.likelihood(z).log_prob(x) + model.prior(x.shape[0]).log_prob(z)).sum(-1)


def test_forward_shapes_and_given_latents():
    model, x = toy()
    output = model(x[:5], reparam=True)
    assert output["z"][0].shape == (5, 20) and output["z"][0].requires_grad
    assert output["px"].log_prob(x[:5]).shape == (5, 20)
    assert set(output["diagnostics"]) == {f"gaussian_toy/distance_{k}" for k in ("A", "b", "mu", "phi")}
    again = model(x[:5], z=output["z"])
    torch.testing.assert_close(again["qz"][0].log_prob(output["z"][0]), output["qz"][0].log_prob(output["z"][0]))
    prior = model.sample_from_prior(7)
    assert prior["z"][0].shape == prior["px"].sample().shape == (7, 20)
    torch.testing.assert_close(model.q(x[:3]).scale, torch.full((3, 20), 2 / 3, dtype=torch.float64))
    torch.testing.assert_close(model.infer(x[:3])[0].loc, x[:3] @ model.A + model.b)


def test_posterior_and_marginal_are_consistent_for_any_z():
    """log p(x) = log p(x, z) - log p(z | x) exactly, whatever z."""
    model, x = toy()
    z = torch.randn(1024, 20, dtype=torch.float64) * 3
    log_px = log_joint(model, x, z) - model.posterior(x).log_prob(z).sum(-1)
    torch.testing.assert_close(log_px, model.log_marginal(x))


def test_marginal_and_posterior_moments_against_monte_carlo():
    """Prior sampling (D = 2 keeps the importance weights tame): log p(x), E[z|x], Var[z|x]."""
    torch.manual_seed(0)
    model, x = toy(D=2, n_points=8)
    n = 400_000
    z = model.prior(n).sample()  # [n, 2]
    for point in x[:3]:
        log_w = model.likelihood(z).log_prob(point.expand(n, 2)).sum(-1)  # [n]
        estimate = torch.logsumexp(log_w, 0) - math.log(n)
        assert abs(estimate - model.log_marginal(point[None])[0]) < 0.02
        w = torch.softmax(log_w, 0)[:, None]
        posterior = model.posterior(point[None])
        assert torch.allclose((w * z).sum(0), posterior.loc[0], atol=0.02)
        assert torch.allclose((w * (z - posterior.loc[0]) ** 2).sum(0), torch.full((2,), 0.5, dtype=torch.float64), atol=0.02)


def test_exact_elbo_against_monte_carlo():
    torch.manual_seed(1)
    model, x = toy()
    point = x[:1]
    n = 50_000
    q = model.q(point.expand(n, 20))
    z = q.sample()
    samples = log_joint(model, point.expand(n, 20), z) - q.log_prob(z).sum(-1)  # [n]
    standard_error = samples.std() / math.sqrt(n)
    assert abs(samples.mean() - model.elbo(point)[0]) < 5 * standard_error


def elbo_gradients(model, x):
    model.zero_grad()
    model.elbo(x).mean().backward()
    return [p.grad.clone() for p in (model.A, model.b, model.mu)]


def pathwise_gradients(model, x, n_samples):
    """Monte-Carlo (reparameterised) gradient of the mean ELBO, ``n_samples`` per point."""
    model.zero_grad()
    rows = x.repeat_interleave(n_samples, 0)
    output = model(rows, reparam=True)
    z = output["z"][0]
    elbo = (output["px"].log_prob(rows) + output["pz"][0].log_prob(z) - output["qz"][0].log_prob(z)).sum(-1)
    (elbo.mean()).backward()
    return [p.grad.clone() for p in (model.A, model.b, model.mu)]


def test_optimum_zeroes_the_elbo_gradient_and_monte_carlo_agrees():
    torch.manual_seed(2)
    model, x = toy()
    model.set_optimum()
    torch.testing.assert_close(model.A, torch.eye(20, dtype=torch.float64) / 2)
    torch.testing.assert_close(model.mu, x.mean(0))
    torch.testing.assert_close(model.b, x.mean(0) / 2)
    for grad in elbo_gradients(model, x):
        assert grad.abs().max() < 1e-6  # float32 rounding of the stored optimum
    for grad in pathwise_gradients(model, x, 50)[1:]:  # b, mu: zero-mean noise of known size
        assert grad.abs().max() < 0.05
    model.perturb(0.3, torch.Generator().manual_seed(0))
    exact = elbo_gradients(model, x)
    assert all(g.abs().max() > 0.1 for g in exact)
    for estimate, expected in zip(pathwise_gradients(model, x, 100), exact):
        assert torch.allclose(estimate, expected, atol=0.05, rtol=0.02)


def test_perturbation_never_touches_the_stored_optimum():
    model, x = toy()
    model.set_optimum()
    assert model.A.data_ptr() != model.optimal_A.data_ptr()
    diagnostics = model.distances_to_optimum()
    assert all(float(v) == 0 for v in diagnostics.values())
    model.perturb(0.01, torch.Generator().manual_seed(3))
    torch.testing.assert_close(model.optimal_A, torch.eye(20, dtype=torch.float64) / 2)
    torch.testing.assert_close(model.optimal_mu, x.mean(0))
    noise = torch.cat([(model.A - model.optimal_A).flatten(), model.b - model.optimal_b, model.mu - model.optimal_mu])
    assert abs(noise.std() - 0.01) < 0.001 and abs(noise.mean()) < 0.002
    diagnostics = model.distances_to_optimum()
    torch.testing.assert_close(diagnostics["gaussian_toy/distance_A"], (model.A - model.optimal_A).norm())
    torch.testing.assert_close(diagnostics["gaussian_toy/distance_phi"] ** 2,
                               diagnostics["gaussian_toy/distance_A"] ** 2
                               + diagnostics["gaussian_toy/distance_b"] ** 2)
    model.set_optimum()  # a second perturbation starts again from the exact optimum
    model.perturb(0.01, torch.Generator().manual_seed(3))
    torch.testing.assert_close((model.A - model.optimal_A).flatten(), noise[:400])


def test_initialisation_and_q_std():
    model, _ = toy(seed=5)
    for p in (model.A, model.b, model.mu):
        assert p.min() >= 1.5 and p.max() <= 2.5
    model, x = toy(q_std=math.sqrt(2 / 3))
    assert math.isclose(float(model.q(x[:1]).scale[0, 0]), math.sqrt(2 / 3), rel_tol=1e-7)
    with pytest.raises(ValueError, match="q_std"):
        toy(q_std=0.0)
    with pytest.raises(ValueError, match="gmm has a discrete latent"):
        get_model("gmm", (1,))(torch.zeros(2, 1), reparam=True)
