"""Known-answer values (alpha = 0, beta = 1, K = 3, l = [0, 1, 2]) in float32 and
float64, for the functions and through the estimators' surrogate."""
import math

import pytest
import torch

from ovis.estimators.particles import Particles, RuntimeOptions, effective_sample_size, iw_bound, normalized_weights
from ovis.estimators.ovis import ovis_asymptotic_control_variate, ovis_mc_control_variate
from ovis.estimators.vimco import leave_one_out_logsumexp, vimco_control_variate

from .helpers import build

LOG_WEIGHTS = [0.0, 1.0, 2.0]
AUX_LOG_WEIGHTS = [0.5, -1.0]
BOUND = 1.308994
WEIGHTS = [0.090031, 0.244728, 0.665241]
SIGNAL = [1.218963, 1.064265, 0.643753]
ESS = 1.958699
CONTROL_VARIATES = {
    "vimco-arithmetic": [1.620115, 1.433781, 0.620115],
    "vimco-geometric": [1.581657, 1.308994, 0.581657],
    "ovis-gamma1": [1.530084, 1.189052, -0.045126],
    "ovis-gamma0": [1.214649, 1.028316, 0.214649],
    "ovis-S2-exclusive": [1.220397, 1.036358, 0.246712],
    "reinforce": [0.0, 0.0, 0.0],
}
DTYPES = [torch.float32, torch.float64]


def close(actual, expected, atol=2e-6):
    return torch.allclose(actual.double(), torch.tensor(expected, dtype=torch.float64), atol=atol, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_bound_weights_signal_and_ess(dtype):
    l = torch.tensor(LOG_WEIGHTS, dtype=dtype)
    bound, weights = iw_bound(l), normalized_weights(l)
    assert bound.dtype == dtype
    assert close(bound, BOUND) and close(weights, WEIGHTS) and close(bound - weights, SIGNAL)
    assert close(effective_sample_size(l), ESS)


@pytest.mark.parametrize("dtype", DTYPES)
def test_control_variate_functions(dtype):
    l = torch.tensor(LOG_WEIGHTS, dtype=dtype)
    bound, weights = iw_bound(l), normalized_weights(l)
    assert close(vimco_control_variate(l, mode="arithmetic"), CONTROL_VARIATES["vimco-arithmetic"])
    assert close(vimco_control_variate(l, mode="geometric"), CONTROL_VARIATES["vimco-geometric"])
    for gamma in (0, 1):
        assert close(ovis_asymptotic_control_variate(l, bound, weights, gamma), CONTROL_VARIATES[f"ovis-gamma{gamma}"])
    aux = torch.tensor(AUX_LOG_WEIGHTS, dtype=dtype)
    assert close(ovis_mc_control_variate(l, aux), CONTROL_VARIATES["ovis-S2-exclusive"])


def synthetic_particles(log_weights, dtype):
    """Particles with log p(x|z) = the given log-weights and log q = log p(z) = 0: ``[1, 1, n]``."""
    log_px = torch.tensor(log_weights, dtype=dtype).view(1, 1, -1)
    zeros = torch.zeros(1, 1, len(log_weights), 1, dtype=dtype)
    return Particles(log_px, zeros.clone().requires_grad_(), zeros.clone(), {})


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("estimator_id", sorted(CONTROL_VARIATES))
def test_estimator_surrogate_uses_the_control_variate(estimator_id, dtype):
    """``control_variate/mse`` = mean_k (c_k - d_k)^2 and the gradient w.r.t. log q(z_k) is -(d_k - c_k)."""
    estimator = build(estimator_id, iw=3)
    aux = AUX_LOG_WEIGHTS if estimator_id.startswith("ovis-S") else []
    particles = synthetic_particles(LOG_WEIGHTS + aux, dtype)
    loss, diagnostics = estimator.surrogate(None, None, particles, RuntimeOptions())
    expected_c = torch.tensor(CONTROL_VARIATES[estimator_id], dtype=torch.float64)
    expected_mse = ((expected_c - torch.tensor(SIGNAL, dtype=torch.float64)) ** 2).mean()
    assert diagnostics["control_variate/mse"].shape == (1,)
    assert abs(diagnostics["control_variate/mse"].item() - expected_mse.item()) < 1e-5
    (grad,) = torch.autograd.grad(loss.sum(), particles.log_qz)
    primary_grad = grad[0, 0, :3, 0].double()
    assert torch.allclose(primary_grad, -(torch.tensor(SIGNAL, dtype=torch.float64) - expected_c), atol=1e-5)
    assert torch.all(grad[0, 0, 3:] == 0)  # auxiliary particles receive no score term
    assert abs(loss.item() + BOUND) < 1e-5  # value of the surrogate = - L (score terms carry zero log q)


def test_ovis_mc_control_variate_is_the_average_of_replaced_signals():
    """Brute force: replace particle k by each auxiliary particle and recompute L - v_k."""
    torch.manual_seed(0)
    l, aux = torch.randn(5, dtype=torch.float64) * 3, torch.randn(4, dtype=torch.float64) * 3
    expected = torch.zeros(5, dtype=torch.float64)
    for k in range(5):
        for s in range(4):
            replaced = l.clone()
            replaced[k] = aux[s]
            expected[k] += (iw_bound(replaced) - normalized_weights(replaced)[k]) / 4
    assert torch.allclose(ovis_mc_control_variate(l, aux), expected, atol=1e-12)
    # alpha and beta: L is the Renyi bound of the replaced weights, v scaled by beta
    alpha, beta = 0.4, 0.7
    expected_renyi = torch.stack([torch.stack([
        iw_bound(torch.cat([l[:k], aux[s:s + 1], l[k + 1:]]), alpha)
        - beta * normalized_weights(torch.cat([l[:k], aux[s:s + 1], l[k + 1:]]))[k] for s in range(4)]).mean()
        for k in range(5)])
    assert torch.allclose(ovis_mc_control_variate(l, aux, alpha, beta), expected_renyi, atol=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
def test_leave_one_out_logsumexp_matches_brute_force(dtype):
    torch.manual_seed(0)
    cases = [torch.randn(7, 6) * 5, torch.tensor([[0.0, -60.0, -70.0, 30.0]]),  # one dominant weight
             torch.tensor([[1.0, float("-inf"), 2.0, float("-inf")]]), torch.tensor([[3.0, 3.0, 3.0]])]
    for l in cases:
        l = l.to(dtype)
        K = l.shape[-1]
        mask = ~torch.eye(K, dtype=torch.bool)
        expected = torch.stack([torch.logsumexp(l[..., mask[k]], dim=-1) for k in range(K)], -1)
        tolerance = 1e-5 if dtype == torch.float32 else 1e-12
        assert torch.allclose(leave_one_out_logsumexp(l), expected, atol=tolerance, rtol=tolerance)
    single = leave_one_out_logsumexp(torch.zeros(2, 1, dtype=dtype))
    assert torch.all(single == float("-inf"))


def test_vimco_geometric_and_renyi_match_their_definition():
    """c_k = (log(sum_{l != k} w_l + w_hat_{-k}) - log K) / (1 - alpha), directly."""
    torch.manual_seed(1)
    alpha, K = 0.3, 5
    l = torch.randn(K, dtype=torch.float64) * 2
    for mode in ("arithmetic", "geometric"):
        expected = []
        for k in range(K):
            others = torch.cat([l[:k], l[k + 1:]])
            log_w_hat = (torch.logsumexp(others, 0) - math.log(K - 1)) if mode == "arithmetic" else others.mean()
            expected.append((torch.logsumexp(torch.cat([others, log_w_hat.view(1)]), 0) - math.log(K)) / (1 - alpha))
        assert torch.allclose(vimco_control_variate(l, alpha, mode), torch.stack(expected), atol=1e-12)


def test_ovis_asymptotic_renyi_correction():
    """Default: the clipped log Z_[-k] equals VIMCO-arithmetic's c_k (divided by 1 - alpha);
    reproduce_original: the original, undivided correction L^alpha + log(1 - v_k) - log(1 - 1/K)."""
    torch.manual_seed(2)
    alpha, gamma, K = 0.6, 0.3, 4
    l = torch.randn(K, dtype=torch.float64)
    bound, weights = iw_bound(l, alpha), normalized_weights(l)
    offset = -gamma * weights + (1 - gamma) * math.log(1 - 1 / K)
    consistent = ovis_asymptotic_control_variate(l, bound, weights, gamma, alpha)
    assert torch.allclose(consistent, vimco_control_variate(l, alpha) + offset, atol=1e-12)
    legacy = ovis_asymptotic_control_variate(l, bound, weights, gamma, alpha, reproduce_original=True)
    assert torch.allclose(legacy, bound + torch.log(1 - weights) - math.log(1 - 1 / K) + offset, atol=1e-12)
    assert not torch.allclose(legacy, consistent)
