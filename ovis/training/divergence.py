"""When a run has diverged: the checks that stop it as failed, keeping its last good
checkpoint.

A run fails when

* any metric is NaN or infinite (every diagnostic of the training steps at each read, every
  evaluated metric), or a parameter is (when a training step fails);
* a KL estimate ``loss/kl_q_p`` = L_K - ELBO is below ``-KL_TOLERANCE``: on the same particles
  L_K = log mean_k w_k >= mean_k log w_k = ELBO by Jensen's inequality (also for the Renyi bound
  of any alpha in [0, 1) and any beta), so a negative value is precision lost to huge weights
  (float32 rounds a bound of magnitude M by about 1e-7 M: beyond ~1e5 nats the check fires);
* on data whose likelihood p(x|z) is a probability mass function (binary or discrete data),
  ``loss/L_k`` > 0 on an evaluation split, although L_K <= log p(x) <= 0 there (evaluations use
  alpha = 0 and beta = 1; a training bound with beta < 1 may legitimately exceed it).
"""
import math
from typing import Dict, List

import torch

from ovis.launch import DivergenceError

BOUND, KL = "loss/L_k", "loss/kl_q_p"
KL_TOLERANCE = 1e-2  # nats per data point; float32 rounding of healthy bounds (|L_K| < 1e4) is below 1e-3
ADVICE = "a smaller --lr usually helps"


def non_finite(values: Dict[str, float]) -> List[str]:
    """``"key = value"`` for each NaN or infinite value."""
    return [f"{key} = {value}" for key, value in values.items() if not math.isfinite(value)]


def impossible_values(values: Dict[str, float], probability_mass: bool) -> List[str]:
    """What in ``values`` cannot hold for a healthy model: a KL estimate below ``-KL_TOLERANCE``
    and, when ``probability_mass`` (the bound is evaluated with alpha 0, beta 1 on data whose
    p(x|z) is a probability mass), a bound above 0."""
    reasons = []
    if values.get(KL, 0.0) < -KL_TOLERANCE:
        reasons.append(f"{KL} = {values[KL]:.6g} < -{KL_TOLERANCE} (L_K below the ELBO of the same particles: "
                       f"precision lost to diverged weights)")
    if probability_mass and values.get(BOUND, 0.0) > 0:
        reasons.append(f"{BOUND} = {values[BOUND]:.6g} > 0 on data where p(x|z) is a probability mass "
                       f"(L_K <= log p(x) <= 0)")
    return reasons


def check_evaluation(step: int, split: str, values: Dict[str, float], probability_mass: bool) -> None:
    """Raise ``DivergenceError`` naming every bad metric of one evaluated split."""
    reasons = non_finite(values) + impossible_values(values, probability_mass)
    if reasons:
        raise DivergenceError(f"diverged at step {step} ({split} metrics): {'; '.join(reasons)}; {ADVICE}")


def check_parameters(step: int, model: torch.nn.Module) -> None:
    """Raise ``DivergenceError`` if a parameter of ``model`` holds NaN or infinite values (an
    optimiser step with a huge gradient: the next forward pass then fails to sample)."""
    bad = [name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()]
    if bad:
        shown = ", ".join(bad[:5]) + (", ..." if len(bad) > 5 else "")
        raise DivergenceError(f"diverged at step {step}: non-finite parameters ({shown}); {ADVICE}")


@torch.no_grad()
def likelihood_is_probability_mass(model: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether the model's p(x|z) at ``x`` ``[b, *x_shape]`` has a discrete support (``support.is_discrete``
    of the ``px`` distribution). Call it in eval mode on a forked RNG: it runs one forward pass."""
    px = model(x).get("px")
    try:
        return bool(px.support.is_discrete)
    except (AttributeError, NotImplementedError):
        return False
