"""VIMCO (Mnih & Rezende, 2016): leave-one-out control variates for the score-function
gradient of the importance weighted bound."""
import math

import torch
from torch import Tensor

from .particles import finite_or_zero
from .registry import EstimatorFamily, Style
from .score_function import ScoreFunctionEstimator

LEAVE_ONE_OUT_MODES = ("arithmetic", "geometric")


def leave_one_out_logsumexp(log_weights: Tensor) -> Tensor:
    """``log sum_{l != k} exp(l_l)`` for every k: ``[..., K] -> [..., K]`` without a K x K matrix.

    For every particle but the largest, ``v_k <= 1/2`` and ``logsumexp(l) + log1p(-v_k)`` is
    accurate; the largest particle's value is computed directly from the others. -inf entries
    are allowed; K = 1 gives -inf (an empty sum).
    """
    total = torch.logsumexp(log_weights, dim=-1, keepdim=True)  # [..., 1]
    finite_total = torch.where(torch.isfinite(total), total, torch.zeros_like(total))
    weights = torch.exp(log_weights - finite_total)  # [..., K], 0 for -inf entries
    others = total + torch.log1p(-weights.clamp(max=1.0))  # [..., K]
    top = log_weights.argmax(dim=-1, keepdim=True)  # [..., 1]
    without_top = log_weights.scatter(-1, top, float("-inf"))  # [..., K]
    return others.scatter(-1, top, torch.logsumexp(without_top, dim=-1, keepdim=True))


def vimco_control_variate(log_weights: Tensor, alpha: float = 0.0, mode: str = "arithmetic") -> Tensor:
    """VIMCO control variates ``c_k``, ``[..., K] -> [..., K]`` (Mnih and Rezende, 2016).

    ``w_k`` is replaced by an estimate from the other particles and the bound is recomputed::

        arithmetic: log w_hat_{-k} = logsumexp_{l != k} l_l - log(K - 1)
        geometric:  log w_hat_{-k} = mean_{l != k} l_l
        c_k = (log(sum_{l != k} w_l + w_hat_{-k}) - log K) / (1 - alpha)

    (``l`` already carries the factor 1 - alpha.) The arithmetic ``c_k`` is
    ``log Z_hat_{[-k]} = log (1/(K-1)) sum_{l != k} w_l``. ``c_k`` depends on the other particles
    only. K = 1, or a ``c_k`` that cannot be formed (all other weights zero), gives 0.
    """
    if mode not in LEAVE_ONE_OUT_MODES:
        raise ValueError(f"VIMCO mode {mode!r}; allowed: {list(LEAVE_ONE_OUT_MODES)}")
    K = log_weights.shape[-1]
    if K == 1:
        return torch.zeros_like(log_weights)
    others = leave_one_out_logsumexp(log_weights)  # [..., K]
    if mode == "arithmetic":
        log_z_others = others - math.log(K - 1)  # logaddexp(others, others - log(K-1)) - log K, simplified
    else:
        finite = torch.isfinite(log_weights)
        finite_values = torch.where(finite, log_weights, torch.zeros_like(log_weights))
        other_sum = finite_values.sum(-1, keepdim=True) - finite_values  # [..., K]
        other_infinite = (~finite).sum(-1, keepdim=True) - (~finite).to(torch.long) > 0  # [..., K]
        log_w_hat = torch.where(other_infinite, torch.full_like(other_sum, float("-inf")), other_sum / (K - 1))
        log_z_others = torch.logaddexp(others, log_w_hat) - math.log(K)
    return finite_or_zero(log_z_others if alpha == 0 else log_z_others / (1 - alpha))


class VIMCO(ScoreFunctionEstimator):
    """VIMCO (Mnih & Rezende, 2016, "Variational inference for Monte Carlo objectives"):
    score-function gradient of L_K with the leave-one-out control variate of
    ``vimco_control_variate`` (``mode`` arithmetic or geometric). ``c_k`` does not depend on
    ``z_k``: unbiased for the gradient of L_K (or the IW-Renyi bound), theta and phi. Works for
    K = 1 (c = 0, plain Reinforce)."""

    def __init__(self, mc: int = 1, iw: int = 1, mode: str = "arithmetic", **options):
        if mode not in LEAVE_ONE_OUT_MODES:
            raise ValueError(f"VIMCO mode {mode!r}; allowed: {list(LEAVE_ONE_OUT_MODES)}")
        super().__init__(mc, iw, **options)
        self.mode = mode

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        return vimco_control_variate(log_weights, options.alpha, self.mode)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, mode={self.mode}"


FAMILIES = (EstimatorFamily(
    name="vimco", grammar="vimco-arithmetic | vimco-geometric",
    ids={"vimco-arithmetic": (VIMCO, {"mode": "arithmetic"}), "vimco-geometric": (VIMCO, {"mode": "geometric"})},
    examples=("vimco-arithmetic", "vimco-geometric"),
    label={"vimco-arithmetic": "VIMCO", "vimco-geometric": "VIMCO (geom.)"},
    style={"vimco-arithmetic": Style("#238b45", (1, 0)), "vimco-geometric": Style("#74c476", (1, 1))},
    table=(
        (
            "`vimco-arithmetic`, `vimco-geometric`",
            "VIMCO leave-one-out control variates (Mnih & Rezende 2016)",
            "∇ L_K",
        ),
    )),)
