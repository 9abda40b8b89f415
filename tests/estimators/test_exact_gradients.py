"""Exact expectations of the gradient estimators on the enumerable binary model.

``enumerate_estimator`` runs an estimator on every tuple of its particles (4 latent states,
so 4^(mc * particles) tuples) and averages the gradients with the tuples' probabilities under
q: the exact mean of the estimator, compared with the exact gradient of the bound (also by
enumeration). Unbiased estimators agree to machine precision, for the generative (theta) and
inference (phi) parameters, with alpha, beta, free bits, mc > 1 and a hierarchical model.
"""
import pytest
import torch

from ovis.estimators import OvisAsymptotic
from ovis.testing import enumerate_estimator

from .helpers import build, exact_gradients, flat

UNBIASED = ["reinforce", "vimco-arithmetic", "vimco-geometric", "ovis-S1-exclusive", "ovis-S2-exclusive",
            "ovis-gamma0"]
RUNTIMES = [{}, {"alpha": 0.4, "beta": 0.7}, {"freebits": 0.3}]


def assert_matches(mean, exact, prefix=""):
    assert torch.allclose(flat(mean, prefix), flat(exact, prefix), atol=1e-12, rtol=1e-10), \
        (flat(mean, prefix) - flat(exact, prefix)).abs().max()


@pytest.mark.parametrize("runtime", RUNTIMES, ids=["iwae", "renyi-beta", "freebits"])
@pytest.mark.parametrize("estimator_id,iw", [(eid, iw) for eid in UNBIASED for iw in (1, 3)
                                             if not (eid.startswith("ovis-gamma") and iw == 1)])
def test_unbiased_estimators_match_the_exact_gradient(estimator_id, iw, runtime, enumerable):
    model, x = enumerable
    mean, _ = enumerate_estimator(build(estimator_id, iw=iw), model, x, **runtime)
    assert_matches(mean, exact_gradients(model, model.exact_iw_bound(x, iw, **runtime).sum()))


@pytest.mark.parametrize("estimator_id", ["reinforce", "vimco-arithmetic", "ovis-S1-exclusive"])
def test_unbiased_with_mc_samples_and_a_hierarchical_model(estimator_id, hierarchical):
    model, x = hierarchical  # two latent groups, q(z_0 | z_1) q(z_1 | x)
    mean, _ = enumerate_estimator(build(estimator_id, mc=2, iw=2), model, x, alpha=0.2)
    assert_matches(mean, exact_gradients(model, model.exact_iw_bound(x, 2, alpha=0.2).sum()))


@pytest.mark.parametrize("estimator_id", ["ovis-gamma1", "ovis-gamma0.5-geometric", "ovis-gamma1-arithmetic",
                                          "wake-wake", "wake-sleep", "ovis-S1", "ovis-S0.5"])
def test_generative_gradient_of_every_iw_bound_estimator_is_exact(estimator_id, enumerable):
    model, x = enumerable
    mean, _ = enumerate_estimator(build(estimator_id, iw=3), model, x, beta=0.8)
    assert_matches(mean, exact_gradients(model, model.exact_iw_bound(x, 3, beta=0.8).sum()), "generative_model")


def test_ovis_non_exclusive_inference_gradient_is_unbiased_for_the_primary_bound(enumerable):
    """ovis-S1 at K = 3: theta trains L_3, phi gets the unbiased gradient of L_2 (2 primary particles)."""
    model, x = enumerable
    mean, _ = enumerate_estimator(build("ovis-S1", iw=3), model, x)
    assert_matches(mean, exact_gradients(model, model.exact_iw_bound(x, 2).sum()), "inference_network")


@pytest.mark.parametrize("leave_one_out", ["clipped", "arithmetic", "geometric"])
@pytest.mark.parametrize("gamma,beta", [(1.0, 1.0), (0.5, 1.0), (1.0, 0.6)])
def test_ovis_asymptotic_targets_iwae_plus_gamma_times_wake_gradient(gamma, beta, leave_one_out, enumerable):
    """E[OVIS~] = grad(-L_K) + gamma beta E[wake-phase phi gradient]: its bias is exactly gamma beta times
    the expected RWS wake update (c_k depends on z_k only through -gamma beta v_k)."""
    model, x = enumerable
    iw = 3
    ovis = OvisAsymptotic(iw=iw, gamma=gamma, leave_one_out=leave_one_out)
    mean, _ = enumerate_estimator(ovis, model, x, beta=beta)
    wake, _ = enumerate_estimator(build("wake-wake", iw=iw), model, x, beta=beta)
    exact = exact_gradients(model, model.exact_iw_bound(x, iw, beta=beta).sum())
    expected = flat(exact, "inference_network") + gamma * beta * flat(wake, "inference_network")
    assert torch.allclose(flat(mean, "inference_network"), expected, atol=1e-12, rtol=1e-10)
    assert (flat(mean, "inference_network") - flat(exact, "inference_network")).norm() > 1e-3  # biased


def test_tvo_with_one_partition_is_an_unbiased_elbo_gradient(enumerable):
    """Partition [0, 1], left sum: the covariance term at beta = 0 is an unbiased score-function
    gradient of the ELBO with a leave-one-out-like baseline (K >= 2)."""
    model, x = enumerable
    elbo = exact_gradients(model, model.exact_iw_bound(x, 1).sum())
    for iw in (2, 3):
        mean, _ = enumerate_estimator(build("tvo-part1", iw=iw), model, x)
        assert_matches(mean, elbo)


def test_tvo_gradient_approaches_the_exact_tvo_objective(matched):
    """Exact TVO objective: sum_j m_j E_{pi_j}[log w] with pi_j ~ q^(1 - beta_j) p(x, z)^beta_j. The
    self-normalised estimator is biased; its bias shrinks as K grows."""
    model, x = matched
    estimators = {iw: build("tvo-part3-beta1", iw=iw) for iw in (2, 3, 4)}
    partition, weights = estimators[2].partition, estimators[2].weights
    log_px, log_qz, log_pz = model.state_log_densities(x)  # [1, S]
    log_w = log_px - (log_qz - log_pz).sum(-1)  # [1, S]
    log_q = log_qz.sum(-1)
    log_pi = torch.log_softmax(partition.view(-1, 1) * log_w + log_q, dim=-1)  # [J, S]
    objective = (weights * (log_pi.exp() * log_w).sum(-1)).sum()
    target = flat(exact_gradients(model, objective))
    errors = [(flat(enumerate_estimator(estimators[iw], model, x)[0]) - target).norm() for iw in (2, 3, 4)]
    assert errors[2] < errors[1] < errors[0] < 0.05 * target.norm()


def test_wake_wake_targets_the_posterior_expectation_of_the_score(enumerable):
    """The wake phi gradient -sum_k v_k grad log q(z_k|x) is 0 in expectation at K = 1 and tends to
    -E_{p(z|x)}[grad log q(z|x)] = grad KL(p(z|x) || q(z|x)) as K grows."""
    model, x = enumerable
    posterior = model.exact_posterior(x).detach()  # [1, S]
    _, log_qz, _ = model.state_log_densities(x)
    target = flat(exact_gradients(model, (posterior * log_qz.sum(-1)).sum()), "inference_network")
    errors = []
    for iw in (1, 2, 3, 4):
        mean, _ = enumerate_estimator(build("wake-wake", iw=iw), model, x)
        if iw == 1:
            assert flat(mean, "inference_network").abs().max() < 1e-12
        errors.append((flat(mean, "inference_network") - target).norm().item())
    assert all(later < earlier for earlier, later in zip(errors, errors[1:])), errors


def test_control_variates_reduce_the_exact_variance(matched):
    """Exact total variance of the phi gradient at K = 3 (high ESS): OVIS-MC < OVIS~ < VIMCO < Reinforce."""
    model, x = matched
    variance = {eid: flat(enumerate_estimator(build(eid, iw=3), model, x)[1], "inference_network").sum()
                for eid in ("reinforce", "vimco-arithmetic", "ovis-S2-exclusive", "ovis-gamma0")}
    assert (variance["ovis-S2-exclusive"] < variance["ovis-gamma0"] < variance["vimco-arithmetic"]
            < variance["reinforce"])
