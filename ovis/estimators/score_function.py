"""Score-function estimators of the importance weighted bound: the shared template,
Reinforce and Reinforce with a neural baseline.

Template. Latents are sampled without gradient. Per data point and mc sample, with
``v_k = softmax_k(l_k)`` and the bound ``L`` of the particles::

    d_k = L - beta v_k                    learning signal of particle k (constant)
    c_k                                   control variate, estimator specific (constant)
    J   = - L  -  sum_k sum_g sg(L - c_k - beta v_k a_kg) log q(z_kg | x)

theta gets the exact gradient of L; phi gets ``sum_k (d_k - c_k) grad log q(z_k | x)``: the
score-function gradient ``L grad log q`` plus the gradient of L at fixed z
(``-beta v_k grad log q``, as in VIMCO, Mnih & Rezende, 2016), minus the control variate term.
``a_kg`` = 1 where group g's KL is above the free-bits floor, else 0 (1 without free bits), so
the direct term stays exact with free bits. The phi gradient is unbiased for any ``c_k`` that
does not depend on ``z_k`` (given the other particles). ``alpha`` enters through L and v only:
``d_k`` is the exact learning signal of the IW-Renyi bound too.

Diagnostics: ``control_variate/mse`` = mean over (m, k, g) of ``(c_kg - d_k)^2`` per data point: the
mean squared error of the control variate as a prediction of the learning signal (every
score-function estimator reports it; the original code called it ``reinforce/mse``).
"""
import math
from abc import abstractmethod
from typing import Dict, Optional, Sequence, Tuple, Union

from torch import Tensor, nn

from .base import GradientEstimator

from .particles import Particles, RuntimeOptions, iw_bound, normalized_weights
from .registry import EstimatorFamily, Style


def _first(values: Tensor, count: int, dim: int = 2) -> Tensor:
    """The first ``count`` entries of ``values`` along ``dim`` (no copy, no op if all)."""
    return values if values.shape[dim] == count else values.narrow(dim, 0, count)


class ScoreFunctionEstimator(GradientEstimator):
    """Template of the score-function estimators (see the module docstring).

    Subclasses define ``control_variate``; they may train theta on a different set of particles
    than the ones that get a score term (``n_theta``, ``n_primary``: the first particles of the
    forward pass) and use the remaining ones as auxiliary particles.
    """
    unbiased_for = "∇ L_K"
    learns_control_variate = False  # True: c_k is trained by the mse term (neural baseline)

    def signal_scale(self) -> Union[float, Tensor]:
        """A positive number (or 0-dim tensor) fixed before the step that divides the phi gradient
        (NVIL's variance normalisation); 1 here, so the phi gradient is unbiased."""
        return 1.0

    @property
    def n_theta(self) -> int:
        """Number of (first) particles whose bound trains theta."""
        return self.layout[1]

    @property
    def n_primary(self) -> int:
        """Number of (first) particles that receive a score term."""
        return self.layout[1]

    def bound_particles(self, particles: Particles) -> Particles:
        return particles if self.n_theta == particles.iw else particles.narrow(0, self.n_theta)

    @abstractmethod
    def control_variate(self, x: Tensor, log_weights: Tensor, bound: Tensor, weights: Tensor,
                        aux_log_weights: Tensor, options: RuntimeOptions) -> Tensor:
        """``c_k``, broadcastable to ``[bs, mc, K']``.

        ``log_weights``, ``weights [bs, mc, K']`` and ``bound [bs, mc]`` of the primary particles,
        ``aux_log_weights [bs, mc, n - K']`` of the auxiliary ones; all without gradient.
        """

    def group_terms(self, model: Optional[nn.Module], x: Tensor, particles: Particles, control_variate: Tensor,
                    options: RuntimeOptions) -> Tuple[Tensor, Union[Tensor, float]]:
        """Per-group control variates ``c_kg`` (broadcastable to ``[bs, mc, K', G]``) and the
        analytic expectation of their z-dependent part, a phi objective ``[bs, mc]`` whose
        gradient is added to the score terms (MuProp); by default ``c_k`` for every group and 0."""
        return control_variate.unsqueeze(-1), 0.0

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        n_theta, n_primary = self.n_theta, self.n_primary
        log_weights = particles.log_weights(options, detach_q=True)  # [bs, mc, n]
        theta_bound = iw_bound(_first(log_weights, n_theta), options.alpha)  # [bs, mc]
        primary = _first(log_weights, n_primary).detach()  # [bs, mc, K']
        bound = theta_bound.detach() if n_primary == n_theta else iw_bound(primary, options.alpha)  # [bs, mc]
        weights = normalized_weights(primary)  # [bs, mc, K']
        signal = bound.unsqueeze(-1) - options.beta * weights  # d_k  [bs, mc, K']
        aux = log_weights.narrow(2, n_primary, log_weights.shape[2] - n_primary).detach()  # [bs, mc, n - K']
        control_variate = self.control_variate(x, primary, bound, weights, aux, options)
        group_control_variate, analytic = self.group_terms(model, x, particles, control_variate, options)
        fixed_control_variate = group_control_variate.detach()  # [bs, mc, K' or 1, G or 1]

        active = particles.free_bits_active(options)
        if active is None:
            prefactor = signal.unsqueeze(-1) - fixed_control_variate  # [bs, mc, K', 1 or G]
        else:
            prefactor = ((bound.unsqueeze(-1).unsqueeze(-1) - fixed_control_variate)
                         - options.beta * weights.unsqueeze(-1) * _first(active, n_primary))  # [bs, mc, K', G]
        log_q = _first(particles.log_qz, n_primary)  # [bs, mc, K', G]
        phi_loss = -((prefactor * log_q).sum((-2, -1)) + analytic) / self.signal_scale()  # [bs, mc]
        loss = (phi_loss - theta_bound).mean(1)  # [bs]

        squared_error = (group_control_variate - signal.unsqueeze(-1)) ** 2  # [bs, mc, K', 1 or G]
        if self.learns_control_variate:
            loss = loss + squared_error.mean((1, 2, 3))
        return loss, {"control_variate/mse": squared_error.detach().mean((1, 2, 3))}


class Reinforce(ScoreFunctionEstimator):
    """Reinforce / score-function gradient of the importance weighted bound without control
    variate (Williams, 1992; Mnih & Rezende, 2016): ``c_k = 0``. Unbiased for the gradient of
    L_K (and of the IW-Renyi bound), theta and phi; high variance."""

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        return log_weights.new_zeros(())


class NeuralBaseline(nn.Module):
    """Input-dependent baseline c(x) of NVIL (Mnih & Gregor, 2014): ``2x - 1`` flattened, then
    ``nlayers`` blocks [Linear(hdim), BatchNorm1d, tanh] and a Linear to one value. ``[bs, *D] -> [bs]``."""

    def __init__(self, x_shape: Sequence[int], hdim: int = 64, nlayers: int = 1):
        super().__init__()
        layers, features = [], math.prod(x_shape)
        for _ in range(nlayers):
            layers += [nn.Linear(features, hdim), nn.BatchNorm1d(hdim), nn.Tanh()]
            features = hdim
        layers.append(nn.Linear(features, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net((2 * x - 1).flatten(1)).squeeze(-1)


class ReinforceBaseline(ScoreFunctionEstimator):
    """Reinforce with a learned, input-dependent baseline ``c_k = c(x)`` (NVIL, Mnih & Gregor,
    2014), trained by the mean squared error to the learning signal, added to the loss
    (the baseline's parameters are ``estimator.parameters()``; give them their own optimiser).
    ``c(x)`` does not depend on z: unbiased for the gradient of L_K, theta and phi.

    Args: ``x_shape`` (required), ``baseline_hdim``, ``baseline_nlayers``.
    """
    owns_parameters = True
    baseline_options = ("baseline_hdim", "baseline_nlayers")
    learns_control_variate = True

    def __init__(self, mc: int = 1, iw: int = 1, x_shape: Optional[Sequence[int]] = None,
                 baseline_hdim: int = 64, baseline_nlayers: int = 1, **options):
        if x_shape is None:
            raise ValueError("reinforce-baseline needs x_shape= (the shape of one data point) to build "
                             "its neural baseline")
        super().__init__(mc, iw, x_shape=x_shape, **options)
        self.baseline = NeuralBaseline(x_shape, baseline_hdim, baseline_nlayers)

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        if x is None:
            raise ValueError("reinforce-baseline's baseline is a function of x: pass x= to loss_from_log_probs")
        return self.baseline(x)[:, None, None]  # [bs, 1, 1]


FAMILIES = (EstimatorFamily(
    name="reinforce", grammar="reinforce | reinforce-baseline",
    ids={"reinforce": (Reinforce, {}), "reinforce-baseline": (ReinforceBaseline, {})},
    examples=("reinforce", "reinforce-baseline"),
    label={"reinforce": "Reinforce", "reinforce-baseline": "Reinforce (baseline)"},
    style={"reinforce": Style("#7b95b0", (5, 0)), "reinforce-baseline": Style("#4a6c8c", (5, 1))},
    table=(
        (
            "`reinforce`, `reinforce-baseline`",
            "score function, no / neural (NVIL) baseline",
            "∇ L_K",
        ),
    )),)
