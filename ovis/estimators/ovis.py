"""OVIS (Lievin, Dittadi, Christensen & Winther, 2020, "Optimal Variance Control of the Score
Function Gradient Estimator for Importance Weighted Bounds"): control variates for the
score-function gradient of the importance weighted bound.

* ``OvisMonteCarlo`` (``ovis-S<S>[-exclusive]``): Monte-Carlo estimate of the optimal control
  variate ``c_k = E[d_k | z_{-k}]`` with S auxiliary particles (paper eq. 12).
* ``OvisAsymptotic`` (``ovis-gamma<g>[-arithmetic|-geometric]``): the unified asymptotic
  approximation ``c_k = log Z_hat_{[-k]} - gamma v_k + (1 - gamma) log(1 - 1/K)`` (paper eq. 17).
"""
import math
import re
from numbers import Integral
from typing import Tuple, Union

import torch
from torch import Tensor

from .particles import RuntimeOptions, finite_or_zero
from .registry import EstimatorFamily, EstimatorId, Parsed, Style, invalid, number_text, parse_number
from .score_function import ScoreFunctionEstimator
from .vimco import LEAVE_ONE_OUT_MODES, leave_one_out_logsumexp, vimco_control_variate


ASYMPTOTIC_LEAVE_ONE_OUT = ("clipped",) + LEAVE_ONE_OUT_MODES


def ovis_asymptotic_control_variate(log_weights: Tensor, bound: Tensor, weights: Tensor, gamma: float,
                                    alpha: float = 0.0, beta: float = 1.0, leave_one_out: str = "clipped",
                                    reproduce_original: bool = False) -> Tensor:
    """OVIS~ control variates, ``[..., K]`` from ``log_weights``/``weights [..., K]``, ``bound [...]``::

        c_k = log Z_hat_{[-k]} - gamma beta v_k + (1 - gamma) log(1 - 1/K)

    ``leave_one_out`` selects ``log Z_hat_{[-k]}``:

    * ``clipped`` (paper, default): ``L + (log max(1 - v_k, eps) - log(1 - 1/K)) / (1 - alpha)``,
      closed form without a K x K matrix, eps the machine epsilon of the dtype;
    * ``arithmetic`` / ``geometric``: VIMCO's leave-one-out control variate (exact, no clipping).

    With alpha > 0 the clipped correction is divided by (1 - alpha), which makes it equal to
    VIMCO-arithmetic's ``c_k``; ``reproduce_original=True``
    reproduces the original code, which did not divide it. ``beta`` scales v_k as in
    the learning signal ``d_k = L - beta v_k`` (beta = 1: the paper's formula). Needs K >= 2.
    """
    K = log_weights.shape[-1]
    if K < 2:
        raise ValueError(f"the OVIS~ control variate needs iw >= 2 (log(1 - 1/K) = -inf at K = 1), got K={K}")
    log_ratio = math.log(1 - 1 / K)
    if leave_one_out == "clipped":
        eps = torch.finfo(weights.dtype).eps
        correction = torch.log((1 - weights).clamp(min=eps)) - log_ratio  # [..., K]
        scale = 1 if (alpha == 0 or reproduce_original) else 1 / (1 - alpha)
        log_z_others = bound.unsqueeze(-1) + scale * correction
    elif leave_one_out in LEAVE_ONE_OUT_MODES:
        log_z_others = vimco_control_variate(log_weights, alpha, leave_one_out)
    else:
        raise ValueError(f"leave_one_out={leave_one_out!r}; allowed: {list(ASYMPTOTIC_LEAVE_ONE_OUT)}")
    return log_z_others - gamma * beta * weights + (1 - gamma) * log_ratio


def ovis_mc_control_variate(log_weights: Tensor, aux_log_weights: Tensor, alpha: float = 0.0,
                            beta: float = 1.0) -> Tensor:
    """OVIS-MC control variates ``[..., K]`` from the primary ``log_weights [..., K]`` and the
    auxiliary ``aux_log_weights [..., S]`` (paper eq. 12)::

        c_k = 1/S sum_s [ L(l^(s,k)) - beta softmax(l^(s,k))_k ]

    where ``l^(s,k)`` is ``l`` with entry k replaced by the auxiliary ``l_s``: a Monte-Carlo
    estimate of ``E[d_k | z_{-k}]``. With ``Z_{-k} = logsumexp_{l != k} l_l``,
    ``L(l^(s,k)) = (logaddexp(Z_{-k}, l_s) - log K) / (1 - alpha)``: memory O(S K), not O(S K^2).
    """
    K = log_weights.shape[-1]
    others = leave_one_out_logsumexp(log_weights).unsqueeze(-2)  # [..., 1, K]
    aux = aux_log_weights.unsqueeze(-1)  # [..., S, 1]
    total = torch.logaddexp(others, aux)  # [..., S, K]
    bounds = (total - math.log(K)) / (1 - alpha)  # [..., S, K]
    replaced_weight = torch.where(torch.isfinite(total), torch.exp(aux - total), torch.zeros_like(total))
    return finite_or_zero((bounds - beta * replaced_weight).mean(-2))


class OvisAsymptotic(ScoreFunctionEstimator):
    """OVIS~ (paper eq. 17): score-function gradient of L_K with the asymptotic control variate
    of ``ovis_asymptotic_control_variate``.

    ``gamma = 1`` targets the high-ESS regime (``d_k - c_k = L - log Z_hat_{[-k]}``), ``gamma = 0``
    the ESS ~ 1 regime. Theta gradients are exact (unbiased for L_K). Phi gradients: for
    gamma > 0 biased by design, since ``c_k`` contains ``v_k``, which depends on ``z_k``; the
    expected phi gradient is ``grad L_K + gamma beta E[sum_k v_k grad log q(z_k|x)]``, the IWAE
    gradient plus gamma times the reweighted wake-sleep (wake-phase) gradient. For gamma = 0,
    ``c_k = log Z_hat_{[-k]} + log(1 - 1/K)`` does not depend on ``z_k``: unbiased for L_K (up to
    the clipping of ``1 - v_k`` at machine epsilon). Requires iw >= 2.

    Args: ``gamma``; ``leave_one_out`` in {clipped (paper), arithmetic, geometric} (ids
    ``ovis-gamma<g>-arithmetic|-geometric``); ``reproduce_original`` (the original's
    handling of alpha > 0, see ``ovis_asymptotic_control_variate``.
    """
    min_iw = 2  # the control variate uses log(1 - 1/K), -inf at K = 1

    def __init__(self, mc: int = 1, iw: int = 1, gamma: float = 1.0, leave_one_out: str = "clipped",
                 reproduce_original: bool = False, **options):
        super().__init__(mc, iw, **options)
        if leave_one_out not in ASYMPTOTIC_LEAVE_ONE_OUT:
            raise ValueError(f"leave_one_out={leave_one_out!r}; allowed: {list(ASYMPTOTIC_LEAVE_ONE_OUT)}")
        self.gamma = float(gamma)
        self.unbiased_for = "∇ L_K" if self.gamma == 0 else "biased"
        self.leave_one_out = leave_one_out
        self.reproduce_original = bool(reproduce_original)

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options: RuntimeOptions) -> Tensor:
        return ovis_asymptotic_control_variate(log_weights, bound, weights, self.gamma, options.alpha,
                                               options.beta, self.leave_one_out, self.reproduce_original)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}, leave_one_out={self.leave_one_out}"


class OvisMonteCarlo(ScoreFunctionEstimator):
    """OVIS-MC (paper eq. 12): score-function gradient with the control variate
    ``c_k = E[d_k | z_{-k}]`` estimated with S auxiliary particles (``ovis_mc_control_variate``).

    * ``exclusive=True`` (``ovis-S<S>-exclusive``): K primary + S auxiliary particles in one
      forward pass; theta and phi are trained on L_K of the K primary particles. ``c_k`` does not
      depend on ``z_k``: unbiased for the gradient of L_K, theta and phi.
    * ``exclusive=False`` (``ovis-S<S>``, fixed budget K): the first K' = max(1, K - S) particles
      are primary, the other K - K' auxiliary; theta is trained on L_K of all K particles (exact),
      phi on L_{K'} of the primary ones (unbiased for the gradient of L_{K'}). Needs K >= 2.

    ``iw_aux``: an int is an absolute number S of auxiliary particles (as in the paper's
    experiments); a float f is a fraction of K, ``S = max(1, int(f K))``. ``reproduce_original=True``
    reproduces the original code at HEAD, where any value is a
    fraction (``ovis-S50`` = 50 K).
    """

    def __init__(self, mc: int = 1, iw: int = 1, iw_aux: Union[int, float] = 1, exclusive: bool = False,
                 reproduce_original: bool = False, **options):
        super().__init__(mc, iw, **options)
        if isinstance(iw_aux, bool) or not iw_aux > 0:
            raise ValueError(f"iw_aux={iw_aux!r}: expected an integer S >= 1 (absolute) or a fraction of iw > 0")
        self.reproduce_original = bool(reproduce_original)
        if isinstance(iw_aux, Integral) and not self.reproduce_original:
            aux = int(iw_aux)
        else:
            aux = max(1, int(float(iw_aux) * self.iw))
        self.exclusive = bool(exclusive)
        if not self.exclusive:
            if self.iw < 2:
                raise ValueError(f"ovis-S<S> without -exclusive takes its auxiliary particles from the iw "
                                 f"particles and needs iw >= 2, got iw={iw}; use ovis-S<S>-exclusive")
            aux = self.iw - max(1, self.iw - aux)
        self.iw_aux = aux
        self.unbiased_for = "∇ L_K" if self.exclusive else f"∇ L_{{K-{aux}}}"

    @property
    def layout(self) -> Tuple[int, int]:
        return self.mc, (self.iw + self.iw_aux if self.exclusive else self.iw)

    @property
    def n_theta(self) -> int:
        return self.iw

    @property
    def n_primary(self) -> int:
        return self.iw if self.exclusive else self.iw - self.iw_aux

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options: RuntimeOptions) -> Tensor:
        return ovis_mc_control_variate(log_weights, aux_log_weights, options.alpha, options.beta)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, iw_aux={self.iw_aux}, exclusive={self.exclusive}"


_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_OVIS_MC = re.compile(rf"ovis-S{_NUMBER}(-exclusive)?")
_GAMMA = re.compile(rf"gamma{_NUMBER}")


def _parse_ovis_mc(estimator_id: str, match: re.Match, reproduce_original: bool) -> Parsed:
    aux = parse_number(match.group(1))
    exclusive = match.group(2) is not None
    config = {"iw_aux": aux, "exclusive": exclusive}
    if reproduce_original:
        config["reproduce_original"] = True
    fraction = reproduce_original or isinstance(aux, float)  # a fraction of K, else a number of particles
    parameter = ("S_per_K", float(aux)) if fraction else ("S", aux)
    suffix = "-exclusive" if exclusive else ""
    written = repr(float(aux)) if fraction else str(aux)  # ovis-S2.0 stays apart from ovis-S2
    label = f"OVIS-MC (S={number_text(aux)}{'K' if fraction else ''}{'' if exclusive else ' of K'})"
    return OvisMonteCarlo, config, EstimatorId(estimator_id, "ovis-S" + suffix, (parameter,), label,
                                               f"ovis-S{written}{suffix}")


def parse_ovis_id(estimator_id: str, reproduce_original: bool) -> Parsed:
    """``ovis-S<S>[-exclusive]`` (int S: S particles; decimal: a fraction of K) and
    ``ovis-gamma<g>[-arithmetic|-geometric]`` (the mode may also come first)."""
    match = _OVIS_MC.fullmatch(estimator_id)
    if match:
        return _parse_ovis_mc(estimator_id, match, reproduce_original)
    tokens = estimator_id.split("-")[1:]
    gammas = [m for m in map(_GAMMA.fullmatch, tokens) if m]
    modes = [t for t in tokens if t in LEAVE_ONE_OUT_MODES]
    if len(gammas) != 1 or len(modes) > 1 or len(gammas) + len(modes) != len(tokens):
        raise invalid(estimator_id, "an ovis id is ovis-S<S>[-exclusive] or ovis-gamma<g>[-arithmetic|-geometric]")
    gamma = float(gammas[0].group(1))
    config = {"gamma": gamma, "leave_one_out": modes[0] if modes else "clipped"}
    if reproduce_original:
        config["reproduce_original"] = True
    mode = f"-{modes[0]}" if modes else ""
    label = f"OVIS~ (gamma={number_text(gamma)}{', ' + modes[0] if modes else ''})"
    return OvisAsymptotic, config, EstimatorId(estimator_id, "ovis-gamma" + mode, (("gamma", gamma),), label,
                                               f"ovis-gamma{number_text(gamma)}{mode}")


def _log_position(value: float, low: float, high: float) -> float:
    """Position of ``value`` in [0, 1] on a log scale from ``low`` to ``high``."""
    return min(max((math.log(max(value, low)) - math.log(low)) / (math.log(high) - math.log(low)), 0.0), 1.0)


def ovis_style(description: EstimatorId) -> Style:
    """OVIS~: golds by gamma (darker arithmetic, lighter geometric); OVIS-MC: S = 1 orange -> S = 50
    dark brown on a log scale, fractions of K in reds, lighter without -exclusive."""
    if description.family.startswith("ovis-gamma"):
        gamma, mode = description.parameter("gamma"), description.family[len("ovis-gamma-"):]
        shade = {"arithmetic": 0.25, "geometric": -0.35}.get(mode, 0.0)
        variant = {"arithmetic": ", arith.", "geometric": ", geom."}.get(mode, "")
        return Style(("#e8b923", "#b8860b", "#7a5c00"), (0, 0, 0, gamma), position=min(max(gamma, 0.0), 1.0),
                     shade=shade, label=rf"OVIS$_{{\sim}}$ ($\gamma={gamma:g}${variant})")
    exclusive = description.family.endswith("-exclusive")
    count, fraction = description.parameter("S"), description.parameter("S_per_K")
    size = f"{fraction:g}K" if count is None else f"{count:g}"
    label = rf"OVIS$_{{\mathrm{{MC}}}}$ ($S={size}$" + ("" if exclusive else " of $K$") + ")"
    if count is None:
        ramp, position = ("#f4a582", "#b2182b", "#67001f"), _log_position(fraction, 0.01, 10)
    else:
        ramp, position = ("#fdae61", "#e6550d", "#8c510a", "#543005"), _log_position(count, 1, 100)
    return Style(ramp, (0, 1, int(count is None), float(count or fraction)), position=position,
                 shade=0.0 if exclusive else -0.3, label=label)


FAMILIES = (EstimatorFamily(
    name="ovis", grammar="ovis-S<int or decimal>[-exclusive] | ovis-gamma<g>[-arithmetic|-geometric]",
    parse=parse_ovis_id, prefixes=("ovis",), label="OVIS", style=ovis_style,
    examples=("ovis-S1", "ovis-S0.5", "ovis-S2-exclusive", "ovis-gamma0", "ovis-gamma1", "ovis-gamma1-arithmetic",
              "ovis-gamma0.5-geometric"),
    table=(
        (
            "`ovis-S<S>-exclusive`",
            "OVIS-MC: optimal control variate estimated with S extra particles (eq. 12)",
            "∇ L_K",
        ),
        (
            "`ovis-S<S>`",
            "OVIS-MC within a budget of K particles (S of them auxiliary; `ovis-S0.3`: S = 0.3 K)",
            "∇_θ L_K, ∇_φ L_{K-S}",
        ),
        (
            "`ovis-gamma<g>`",
            "OVIS~: asymptotic control variate (eq. 17); `-arithmetic`, `-geometric` from VIMCO",
            "γ = 0: ∇ L_K; γ > 0 biased by design",
        ),
    )),)
