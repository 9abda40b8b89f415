"""RODEO (Shi, Zhou, Hwang, Titsias & Mackey, "Gradient Estimation with Discrete Stein Operators",
NeurIPS 2022): leave-one-out REINFORCE plus control variates from the Gibbs Stein operator.

The ``mc`` outer samples of a data point are independent; ``f_m`` is the bound of sample m (the
ELBO at iw = 1) as a function of its binary latents ``x_m`` (the D units of all iw particles of
one layer), ``p = E_q[x]``, ``s_m = grad_x f_m`` at the sampled latents. The Gibbs sampler that
flips unit d of x with probability ``w_d = q_d(1 - x_d)`` leaves q invariant; its Stein operator
``(A g)(x) = sum_d w_d (g(y_d) - g(x))`` (``y_d``: x with unit d flipped) has ``E_q[A g] = 0`` for
every g. The function g of sample m is built from the other samples only: the mean of their
first-order Taylor expansions ``g_m(y) = mean_{j != m} (f_j + s_j . (y - x_j))``, and its centred
part ``g1_m = g_m - mean_{j != m} f_j``. With ``loo`` the mean over the other samples, the
gradient with respect to the logit of unit d of sample m is::

    (f_m - loo(f + a A g)_m) (x_md - p_d)                      leave-one-out baseline + scalar CV
      + b [A (g1_m grad log q)](x_m)_d                          vector CV
    = (x_md - p_d) (f_m - loo(f + a A g)_m + b ((A g_m)(x_m) - g1_m(y_md)))

In the paper and its code, g is a small network (one hidden layer of 100 units) of the Taylor features and of
the other samples' mean bound, with two outputs (one for each control variate), learned with the
coefficients ``a``, ``b`` (both starting at 0) by a step on the mean square of the logits'
gradient estimate after every estimate. Here g is the Taylor features themselves, with no
network. ``rodeo`` fixes ``a = 1`` and ``b = 1/2``, for which the baseline is ``E f`` and the
coordinate cross terms cancel when f is linear in x. ``rodeo-learned`` learns ``a`` and ``b`` as
the paper does (from 0, the trainer's Adam on the estimator's parameters, ``--baseline_lr``; the
step is ``double_cv.variance_step``'s with ``G = G0 + a Ga + b Gb`` for the offset on each
unit's logits, ``Ga`` and ``Gb`` the two control variates' terms). Each ``g_m`` depends on the
other samples only and A has zero mean under q, so the estimator is unbiased for the gradient of
L_K (the ELBO at iw = 1, the IW-Renyi bound at alpha > 0), theta and phi, for one layer of
Bernoulli latents, at any a and b fixed before the step. The neighbours ``y_md`` enter through
the Taylor expansions (no model evaluation): one model evaluation per particle and one backward
pass of the bounds to the latents (the leaves of ``double-cv``).
"""
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from .relaxations import bernoulli_logits
from .particles import Particles, RuntimeOptions, iw_bound
from .double_cv import DoubleControlVariate, leave_one_out, variance_step
from .registry import EstimatorFamily, Style


def stein_features(slopes: Tensor, x: Tensor, p: Tensor) -> Tuple[Tensor, Tensor]:
    """``(A g_m)(x_m) [bs, mc]`` and the vector control variate's factor ``(A g_m)(x_m) -
    g1_m(y_md) [bs, mc, D]`` (module docstring); ``slopes``, ``x``, ``p [bs, mc, D]``."""
    others = leave_one_out(slopes)  # s_-m  [bs, mc, D]
    jumps = others * (1 - 2 * x)  # g_m(y_md) - g_m(x_m)  [bs, mc, D]
    stein = ((p - x) * others).sum(-1)  # (A g_m)(x_m): w_d (1 - 2 x_d) = p_d - x_d  [bs, mc]
    centred = (others * x).sum(-1) - leave_one_out((slopes * x).sum(-1))  # g1_m(x_m)  [bs, mc]
    return stein, stein[..., None] - (centred[..., None] + jumps)


class Rodeo(DoubleControlVariate):
    """RODEO without a learned network (module docstring): ``mc >= 2`` independent samples of one
    layer of Bernoulli latents, a model that accepts samplers; ``scalar_scale`` a, ``vector_scale`` b
    (with ``learn``: their starting values)."""
    name = "rodeo"
    latent_types = frozenset({"bernoulli"})

    def __init__(self, mc: int = 2, iw: int = 1, scalar_scale: float = 1.0, vector_scale: float = 0.5,
                 learn: bool = False, **options):
        super().__init__(mc, iw, **options)
        self.learn = self.owns_parameters = bool(learn)
        if self.learn:
            self.scalar_scale = nn.Parameter(torch.tensor(float(scalar_scale)))
            self.vector_scale = nn.Parameter(torch.tensor(float(vector_scale)))
        else:
            self.scalar_scale, self.vector_scale = float(scalar_scale), float(vector_scale)

    def logit_coefficients(self, bound: Tensor, slopes: Tensor, x: Tensor, p: Tensor) -> Tensor:
        """The factor of ``(x_md - p_d)`` (module docstring), ``[bs, mc, D]``; ``bound [bs, mc]``,
        ``slopes``, ``x``, ``p [bs, mc, D]``; no gradient."""
        stein, vector = stein_features(slopes, x, p)
        baseline = leave_one_out(bound + self.scalar_scale * stein)  # [bs, mc]
        return (bound - baseline)[..., None] + self.vector_scale * vector

    def coefficient_learning(self, bound: Tensor, slopes: Tensor, x: Tensor, p: Tensor) -> Tensor:
        """``variance_step`` for a and b (module docstring): ``G = G0 + a Ga + b Gb`` per logit,
        ``G0`` the leave-one-out term; arguments as ``logit_coefficients``'."""
        stein, vector = stein_features(slopes, x, p)
        score = x - p  # [bs, mc, D]
        per_logit = torch.stack([(bound - leave_one_out(bound))[..., None] * score,
                                 -leave_one_out(stein)[..., None] * score, vector * score]).mean(2)  # [3, bs, D]
        return variance_step(per_logit, torch.stack([self.scalar_scale, self.vector_scale]), self.iw)

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc], with the log q term
        bs, mc = bound.shape
        slopes = self.slopes(bound, particles).detach().reshape(bs, mc, -1)  # [bs, mc, D]
        logits = bernoulli_logits(particles.output["qz"][0])  # [rows, N]
        p = torch.sigmoid(logits.detach()).reshape(bs, mc, -1)  # [bs, mc, D]
        z = particles.leaves[0].detach().reshape(bs, mc, -1)  # [bs, mc, D]
        with torch.no_grad():
            gradient = self.logit_coefficients(bound.detach(), slopes, z, p) * (z - p)  # [bs, mc, D]
        phi_term = (gradient * logits.reshape(bs, mc, -1)).sum(-1)  # [bs, mc]
        loss = -(bound + phi_term).mean(1)  # [bs]
        if self.learn and self.training and torch.is_grad_enabled():
            loss = loss + self.coefficient_learning(bound.detach(), slopes, z, p)
        return loss, {}

    def extra_repr(self) -> str:
        a, b = (float(c.detach() if self.learn else c) for c in (self.scalar_scale, self.vector_scale))
        return f"mc={self.mc}, iw={self.iw}, scalar_scale={a:g}, vector_scale={b:g}, learn={self.learn}"


FAMILIES = (EstimatorFamily(name="rodeo", grammar="rodeo | rodeo-learned",
                            ids={"rodeo": (Rodeo, {}),
                                 "rodeo-learned": (Rodeo, {"learn": True, "scalar_scale": 0.0, "vector_scale": 0.0})},
                            examples=("rodeo", "rodeo-learned"),
                            label={"rodeo": "RODEO", "rodeo-learned": "RODEO, learned a, b"},
                            style={"rodeo": Style("#31a354", (10, 3)),
                                   "rodeo-learned": Style("#31a354", (10, 3, 1), shade=0.4, linestyle="--")},
    table=(
        (
            "`rodeo`, `rodeo-learned`",
            ("RODEO (Shi et al. 2022): leave-one-out plus Gibbs Stein-operator control variates, the Taylor "
             "features instead of the learned network, with fixed coefficients or coefficients learned by the "
             "paper's variance step; one layer of Bernoulli latents, `--mc K >= 2`"),
            "∇ L_K",
        ),
    )),)
