"""Antithetic estimators for Bernoulli latents: ARM (Yin & Zhou, 2019), DisARM (Dong, Mnih &
Tucker, 2020) and DisARM's local version for the importance weighted bound.

With ``u ~ U(0, 1)`` per unit, the pair ``b = H(a + logit u)`` and ``b~ = H(a + logit(1 - u))``
has the marginal q for each member. For ``f`` = the bound ``L`` of all particles (the ELBO at
iw = 1), the gradient with respect to the logits ``a`` of a group is estimated by::

    ARM:      (f(b) - f(b~)) (u - 1/2)
    DisARM:   1/2 (f(b) - f(b~)) (-1)^b~ 1[b != b~] sigmoid(|a|)        (ARM averaged over u | b, b~)
    local DisARM (iw):  particle k's units get 1/2 (L(b_1..b_K) - L(b_1..b~_k..b_K)) (-1)^b~ 1[b != b~] sigmoid(|a|)

Every stochastic layer: in sampling order, layer g's antithetic pass keeps the noise of every
other layer (so the layers drawn before g are shared and those after g use common random
numbers) and replaces ``u_g`` by ``1 - u_g``: ``1 + G`` evaluations of the model for G layers (the
DisARM code's multi-layer estimator with shared randomness), the G antithetic ones batched in one
pass without gradient. The generative parameters get the
exact gradient of ``L(b)``, the inference parameters also the gradient of ``L(b)`` at fixed ``b``
(the log q term inside the bound: zero mean at iw = 1, the wake term for iw > 1; needed with
free bits). Unbiased for the gradient of L_K (the ELBO at iw = 1; the IW-Renyi bound for
alpha > 0), theta and phi: the logit gradients above are unbiased for ``grad_a E[f]`` given the
layers drawn before (the later layers' draws are independent of ``u_g``), and the local version
applies DisARM to ``b_k -> L(b_1..b_k..b_K)`` with the other particles fixed.
"""
import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .relaxations import NoiseSampler
from .particles import Particles, RuntimeOptions, iw_bound
from .controlled import ControlledNoiseEstimator, group_logits, group_samples
from .vimco import leave_one_out_logsumexp
from .registry import EstimatorFamily, Style

ANTITHETIC_MODES = ("arm", "disarm", "disarm-iw")


def swapped_bounds(log_weights: Tensor, swapped: Tensor, alpha: float = 0.0) -> Tensor:
    """``L(l_1 .. l~_k .. l_K)`` for every k: particle k's log-weight replaced by ``swapped``;
    ``[..., K] x 2 -> [..., K]``."""
    others = leave_one_out_logsumexp(log_weights)  # [..., K]
    bound = torch.logaddexp(others, swapped) - math.log(log_weights.shape[-1])
    return bound if alpha == 0 else bound / (1 - alpha)


class Antithetic(ControlledNoiseEstimator):
    """ARM / DisARM / local DisARM (``mode``, module docstring). Needs Bernoulli latents and a model
    that accepts samplers; costs ``1 + G`` model evaluations (G stochastic layers), in two passes."""
    noise_quadrature_nodes = 1  # constant or linear in the noise between thresholds: exact

    def __init__(self, mc: int = 1, iw: int = 1, mode: str = "disarm", **options):
        if mode not in ANTITHETIC_MODES:
            raise ValueError(f"antithetic mode {mode!r}; allowed: {list(ANTITHETIC_MODES)}")
        super().__init__(mc, iw, **options)
        self.mode = mode

    def model_evaluations(self, latent_size: Optional[int] = None) -> int:
        """``1 + G`` passes per particle, G the stochastic layers of the probed model (1 before any)."""
        return (1 + self.latent_groups) * self.mc * self.iw

    def logit_gradient(self, signal: Tensor, u: Tensor, b: Tensor, b_anti: Tensor, logits: Tensor) -> Tensor:
        """Estimate of ``d E[f] / d logits`` ``[rows, N]`` from ``signal = f(b) - f(b~)`` ``[rows, 1]``."""
        if self.mode == "arm":
            return signal * (u - 0.5)
        sign = 1 - 2 * b_anti  # (-1)^b~
        return 0.5 * signal * (b != b_anti).to(u.dtype) * sign * torch.sigmoid(logits.abs())

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        log_weights = particles.log_weights(options)  # [bs, mc, K], with the log q term
        bound = iw_bound(log_weights, options.alpha)  # [bs, mc]
        bs, mc, K = log_weights.shape
        logits, hard = group_logits(particles), group_samples(particles)
        groups = list(particles.noise)
        with torch.no_grad():  # the G antithetic passes as one pass over G copies of the batch (block g: u_g -> 1 - u_g)
            noise = {h: torch.cat([1 - u if h == g else u for g in groups]) for h, u in particles.noise.items()}
            antithetic = self.evaluate(model, x.repeat(len(groups), *[1] * (x.dim() - 1)), NoiseSampler(noise),
                                       options)
            anti_weights = antithetic.log_weights(options).view(len(groups), bs, mc, K)  # [G, bs, mc, K]
        phi_loss = bound.new_zeros(bs, mc)
        for block, group in enumerate(groups):
            with torch.no_grad():
                if self.mode == "disarm-iw":
                    signal = bound.detach().unsqueeze(-1) - swapped_bounds(log_weights.detach(), anti_weights[block],
                                                                           options.alpha)  # [bs, mc, K]
                else:
                    signal = (bound.detach() - iw_bound(anti_weights[block], options.alpha)).unsqueeze(-1)
                    signal = signal.expand(bs, mc, K)  # [bs, mc, K]
                b_anti = antithetic.output["z"][group].view(len(groups), bs * mc * K, -1)[block]  # [rows, N]
                gradient = self.logit_gradient(signal.reshape(-1, 1), particles.noise[group], hard[group], b_anti,
                                               logits[group].detach())  # [rows, N]
            phi_loss = phi_loss - (gradient * logits[group]).sum(-1).view(bs, mc, K).sum(-1)
        return (phi_loss - bound).mean(1), {}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}"


FAMILIES = (EstimatorFamily(
    name="antithetic", grammar="arm | disarm | disarm-iw",
    ids={mode: (Antithetic, {"mode": mode}) for mode in ANTITHETIC_MODES}, examples=ANTITHETIC_MODES,
    label={"arm": "ARM", "disarm": "DisARM", "disarm-iw": "DisARM (IW)"},
    style={"arm": Style("#762a83", (8, 0)), "disarm": Style("#c51b7d", (8, 1)), "disarm-iw": Style("#de77ae", (8, 2))},
    table=(
        (
            "`arm`, `disarm`, `disarm-iw`",
            ("antithetic estimators for Bernoulli latents (Yin & Zhou 2019; Dong et al. 2020) and local DisARM of "
             "the multi-sample bound"),
            "∇ L_K",
        ),
    )),)
