"""Monte-Carlo tests through the estimators' sampling path (fixed seeds).

Each call draws ``N`` independent gradient estimates at once (``N`` copies of a data point, one
parameter copy each). Means are compared with exact gradients, or two estimators with each
other, coordinate by coordinate within 4.5 standard errors computed from the samples.
"""

import pytest
import torch

from ovis.testing import per_datum_gradients

from .helpers import build, exact_gradients, flat, flat_samples, max_z_difference, max_z_score

N = 20000
Z_MAX = 4.5


@pytest.mark.parametrize("estimator_id,mc,iw", [("reinforce", 1, 3), ("vimco-arithmetic", 2, 3),
                                                ("ovis-S1-exclusive", 1, 3), ("ovis-gamma0", 1, 4)])
def test_unbiased_score_function_estimators_sample_the_exact_gradient(estimator_id, mc, iw, matched):
    model, x = matched
    torch.manual_seed(0)
    samples = flat_samples(per_datum_gradients(build(estimator_id, mc=mc, iw=iw), model, x, N))  # [N, D]
    exact = flat(exact_gradients(model, model.exact_iw_bound(x, iw).sum()))
    assert max_z_score(samples, exact) < Z_MAX


def test_the_comparison_detects_a_biased_estimator(matched):
    """Power check of the test above: OVIS~ with gamma = 1 is biased for L_K and is caught."""
    model, x = matched
    torch.manual_seed(0)
    samples = flat_samples(per_datum_gradients(build("ovis-gamma1", iw=4), model, x, N))
    exact = flat(exact_gradients(model, model.exact_iw_bound(x, 4).sum()))
    assert max_z_score(samples, exact) > 10 * Z_MAX


def test_wake_sleep_inference_gradient_targets_the_sleep_objective(enumerable):
    """Sleep phase: unbiased for grad_phi of -E_{p(x, z)}[log q(z|x)] (exact over every x and z)."""
    model, x = enumerable
    torch.manual_seed(0)
    samples = flat_samples(per_datum_gradients(build("wake-sleep", iw=2), model, x, N), "inference_network")
    exact = flat(exact_gradients(model, model.exact_sleep_objective()), "inference_network")
    assert max_z_score(samples, exact) < Z_MAX


@pytest.mark.parametrize("runtime", [{}, {"alpha": 0.5, "beta": 0.7}], ids=["iwae", "renyi-beta"])
@pytest.mark.parametrize("estimator_id", ["dreg", "reinforce", "vimco-arithmetic", "ovis-S2-exclusive"])
def test_unbiased_estimators_agree_with_pathwise_iwae_on_the_gaussian_model(estimator_id, runtime, gaussian):
    """Pathwise IWAE is unbiased for grad L_K; DReG (including its alpha/beta reweighting) and the
    score-function estimators agree with it in expectation, theta and phi."""
    model, x = gaussian
    torch.manual_seed(1)
    reference = flat_samples(per_datum_gradients(build("pathwise-iwae", iw=4), model, x, N, **runtime))
    samples = flat_samples(per_datum_gradients(build(estimator_id, iw=4), model, x, N, **runtime))
    assert max_z_difference(samples, reference) < Z_MAX


def test_stl_is_biased_for_iwae_but_not_for_the_elbo(gaussian):
    model, x = gaussian
    torch.manual_seed(2)
    exact_elbo = flat(exact_gradients(model, model.elbo(x).sum()))
    for estimator_id in ("stl", "pathwise-vae", "dreg"):  # K = 1: unbiased ELBO gradients
        samples = flat_samples(per_datum_gradients(build(estimator_id, iw=1), model, x, N))
        assert max_z_score(samples, exact_elbo) < Z_MAX
    reference = flat_samples(per_datum_gradients(build("pathwise-iwae", iw=4), model, x, N), "inference_network")
    stl = flat_samples(per_datum_gradients(build("stl", iw=4), model, x, N), "inference_network")
    assert max_z_difference(stl, reference) > 10 * Z_MAX


def test_pathwise_vae_averages_mc_times_iw_elbos(gaussian):
    model, x = gaussian
    torch.manual_seed(3)
    samples = flat_samples(per_datum_gradients(build("pathwise-vae", mc=2, iw=3), model, x, N))
    assert max_z_score(samples, flat(exact_gradients(model, model.elbo(x).sum()))) < Z_MAX
    assert samples.var(0).sum() < flat_samples(per_datum_gradients(build("pathwise-vae"), model, x, N)).var(0).sum()


@pytest.mark.parametrize("estimator_id", ["stl", "dreg"])
def test_zero_variance_at_the_optimum(estimator_id, gaussian):
    """With q equal to the exact posterior every log-weight equals log p(x): the STL and DReG
    inference gradients vanish for every sample (pathwise IWAE keeps a noisy score term)."""
    model, x = gaussian
    model.set_optimal_inference()
    torch.manual_seed(4)
    grads = flat_samples(per_datum_gradients(build(estimator_id, iw=5), model, x, 1000), "inference_network")
    assert grads.abs().max() < 1e-10
    iwae = flat_samples(per_datum_gradients(build("pathwise-iwae", iw=5), model, x, 1000), "inference_network")
    assert iwae.abs().max() > 1e-2


def test_large_k_bound_approaches_log_marginal(gaussian):
    """Sanity of the bound itself: E[L_K] increases with K towards log p(x) (closed form)."""
    model, x = gaussian
    torch.manual_seed(5)
    estimates = {}
    for iw in (1, 10, 1000):
        _, diagnostics, _ = build("pathwise-iwae", iw=iw)(model, x.expand(200, 2))
        estimates[iw] = diagnostics["loss/L_k"].mean().item()
    log_px = model.log_marginal(x).item()
    assert estimates[1] < estimates[10] < estimates[1000] <= log_px + 1e-3
    assert abs(estimates[1] - model.elbo(x).item()) < 0.1
    assert abs(estimates[1000] - log_px) < 0.01
