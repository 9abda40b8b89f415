"""Score-function estimators with baselines that do not depend on the sampled latents: NVIL
(Mnih & Gregor, 2014) and the leave-one-out baseline over independent ELBO samples (Kool, van
Hoof & Welling, 2019; the ``reinforce_loo`` of the DisARM code). Both fill in the control
variate ``c_k`` of the template in ``score_function.py``."""
from typing import Optional, Sequence, Union

import torch
from torch import Tensor

from .score_function import NeuralBaseline, ScoreFunctionEstimator
from .registry import EstimatorFamily, Style


class NVIL(ScoreFunctionEstimator):
    """NVIL (Mnih & Gregor, 2014, "Neural variational inference and learning in belief networks").

    Control variate ``c_k = C(x) + m``: an input-dependent neural baseline ``C(x)`` (trained by the
    mean squared error to the learning signal ``d_k`` of the template, like ``reinforce-baseline``)
    plus a running mean ``m`` of the residual ``d_k - C(x)``. Variance normalisation: the phi
    gradient is divided by ``s = max(1, sqrt(v))``, ``v`` the running variance of the centred
    signal ``d_k - C(x) - m``. Running statistics are exponential moving averages with
    ``momentum`` (0.8 in the paper) of the batch means, updated after each training call
    (``self.training`` and gradients enabled), so ``m`` and ``s`` are fixed during a step.

    ``c_k`` does not depend on ``z``: the theta gradient is unbiased for L_K (L_1 = ELBO at iw = 1),
    the phi gradient is unbiased for ``grad L_K / s`` (``s`` is an adaptive step size known before
    the step; ``s = 1`` until the signal's variance exceeds 1). The normalisation applies in training
    mode only: in eval mode (gradient analyses, ``--track_grad_variances``) ``s = 1``. Args: ``x_shape`` (required),
    ``baseline_hdim``, ``baseline_nlayers``, ``momentum``.
    """
    learns_control_variate = True
    owns_parameters = True
    baseline_options = ("baseline_hdim", "baseline_nlayers")

    def __init__(self, mc: int = 1, iw: int = 1, x_shape: Optional[Sequence[int]] = None,
                 baseline_hdim: int = 64, baseline_nlayers: int = 1, momentum: float = 0.8, **options):
        if x_shape is None:
            raise ValueError("nvil needs x_shape= (the shape of one data point) to build its neural baseline")
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"momentum={momentum!r}: expected a number in [0, 1)")
        super().__init__(mc, iw, x_shape=x_shape, **options)
        self.baseline = NeuralBaseline(x_shape, baseline_hdim, baseline_nlayers)
        self.momentum = momentum
        self.register_buffer("signal_mean", torch.zeros(()))
        self.register_buffer("signal_variance", torch.ones(()))
        self._step_scale = 1.0

    def signal_scale(self) -> Union[float, Tensor]:
        return self._step_scale

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        neural = self.baseline(x)[:, None, None]  # [bs, 1, 1]
        mean = self.signal_mean.clone()  # the statistics before this step's update
        # a new tensor (no host sync), unchanged by the statistics update below
        self._step_scale = self.signal_variance.sqrt().clamp(min=1.0) if self.training else 1.0
        if self.training and torch.is_grad_enabled():
            self._update_statistics(bound.unsqueeze(-1) - options.beta * weights - neural.detach())
        return neural + mean

    # Outside any compiled graph (run.py --compile): mutated inside one, the statistics read before
    # the update came out updated in inductor's backward pass (phi gradients 20% off the eager ones)
    @torch.compiler.disable
    @torch.no_grad()
    def _update_statistics(self, residual: Tensor) -> None:
        """``residual [bs, mc, K]``: learning signal minus the neural baseline; used from the next call on."""
        keep = self.momentum
        mean = self.signal_mean.clone()
        self.signal_mean.mul_(keep).add_((1 - keep) * residual.mean())
        self.signal_variance.mul_(keep).add_((1 - keep) * ((residual - mean) ** 2).mean())

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}"


class ReinforceLeaveOneOut(ScoreFunctionEstimator):
    """Reinforce with the leave-one-out baseline over the ``mc`` independent bounds of a data point
    (Kool et al., 2019, "Buy 4 REINFORCE samples, get a baseline for free!"): ``c_mk`` = mean of
    the bounds ``L_m'`` of the other outer samples ``m' != m``, so it needs ``mc >= 2``. The other
    samples are independent of sample m: unbiased for the gradient of L_K (the ELBO at iw = 1),
    theta and phi. The DisARM paper's 2-sample ``reinforce_loo`` is ``--mc 2 --iw 1``."""
    min_mc = 2

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        mc = bound.shape[1]
        return ((bound.sum(1, keepdim=True) - bound) / (mc - 1)).unsqueeze(-1)  # [bs, mc, 1]


FAMILIES = (EstimatorFamily(
    name="baselines", grammar="nvil | reinforce-loo",
    ids={"nvil": (NVIL, {}), "reinforce-loo": (ReinforceLeaveOneOut, {})}, examples=("nvil", "reinforce-loo"),
    label={"nvil": "NVIL", "reinforce-loo": "Reinforce (leave-one-out)"},
    style={"nvil": Style("#1f4e79", (5, 2)), "reinforce-loo": Style("#a6bddb", (5, 3))},
    table=(
        (
            "`nvil`, `reinforce-loo`",
            ("NVIL: learned input-dependent baseline with signal normalisation (Mnih & Gregor 2014); leave-one-out"
             " baseline over the `mc` samples"),
            "∇ L_K",
        ),
    )),)
