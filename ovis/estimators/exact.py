"""The exact gradient of the importance weighted bound by enumeration, as an estimator.

Every joint latent state ``s`` of a model with discrete latents (Bernoulli or one-hot
categorical, any number of layers) is evaluated once: ``l_s`` (the log-weight of base.py) and
``log q(s | x)``. With the ``S^K`` K-tuples of states ``t = (s_1 .. s_K)``::

    L_K = sum_t prod_k q(s_k | x) (logsumexp_k l_{s_k} - log K) / (1 - alpha)

is the bound itself (the ELBO at K = 1), a differentiable function of theta and phi; the loss is
``-L_K``, so theta and phi get the exact gradient: zero variance, the reference every unbiased
estimator is measured against (the enumeration of the test harness, runnable in training).
It refuses models with continuous latents and those whose ``S^K`` exceeds ``max_tuples``.
"""
import itertools
import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from ..models.sampling import Given
from .particles import Particles, RuntimeOptions, iw_bound, sample_particles
from .factorised import DiscreteLatentEstimator, LatentGroup, unit_values
from .registry import EstimatorFamily, Style

MAX_TUPLES = 2 ** 16


class ExactEnumeration(DiscreteLatentEstimator):
    """Exact gradient of L_K (the ELBO at iw = 1, the IW-Renyi bound at alpha > 0) by
    enumerating every joint latent state and every K-tuple of states (module docstring). Unbiased
    with zero variance, theta and phi. ``S`` model evaluations per data point (S joint states),
    plus the ``mc * iw`` sampled particles whose bound it reports."""
    name = "exact"

    def __init__(self, mc: int = 1, iw: int = 1, max_tuples: int = MAX_TUPLES, **options):
        super().__init__(mc, iw, **options)
        self.max_tuples = int(max_tuples)

    def check_groups(self, groups: List[LatentGroup]) -> None:
        super().check_groups(groups)
        states = math.prod(g.states for g in groups)
        if states ** self.iw > self.max_tuples:
            raise ValueError(f"exact enumerates S^K = {states}^{self.iw} tuples of latent states per data point, "
                             f"more than max_tuples = {self.max_tuples}: use it on models with few latent units "
                             f"(e.g. --N 4 --depth 1) and a small --iw, or an estimator that samples, such as "
                             f"ovis-gamma1 or vimco-arithmetic")

    def model_evaluations(self, latent_size: Optional[int] = None) -> int:
        states = latent_size if self.groups is None else math.prod(g.states for g in self.groups)
        return self.mc * self.iw + (states or 0)

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        with torch.no_grad():  # the sampled particles only report the bound (diagnostics)
            return super().sample(model, x, options)

    def states(self, dtype: torch.dtype, device: torch.device) -> List[Tensor]:
        """Every joint latent state, per group ``[S, ...]`` (first group's units slowest)."""
        categories = [range(g.categories) for g in self.groups for _ in range(g.units)]
        indices = torch.tensor(list(itertools.product(*categories)), device=device)  # [S, sum N]
        return [unit_values(block, g, dtype) for g, block in
                zip(self.groups, indices.split([g.units for g in self.groups], dim=1))]

    def state_log_weights(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Tuple[Tensor, Tensor]:
        """``l_s`` and ``log q(s | x)``, both ``[bs, S]``, at every joint state (one pass)."""
        bs = x.shape[0]
        states = self.states(x.dtype, x.device)
        S = states[0].shape[0]
        given = Given([state.repeat(bs, *[1] * (state.dim() - 1)) for state in states])  # [bs * S, ...]
        particles = sample_particles(model, x, 1, S, False, options, sampler=given)
        return particles.log_weights(options)[:, 0], particles.log_qz.sum(-1)[:, 0]  # [bs, S] x 2

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        log_weights, log_q = self.state_log_weights(model, x, options)  # [bs, S] x 2
        S = log_weights.shape[1]
        grids = torch.meshgrid(*[torch.arange(S, device=x.device)] * self.iw, indexing="ij")
        tuples = torch.stack(grids, -1).reshape(-1, self.iw)  # [S^K, K]
        tuple_log_q = log_q[:, tuples].sum(-1)  # [bs, S^K]
        bounds = iw_bound(log_weights[:, tuples], options.alpha)  # [bs, S^K]
        bound = (tuple_log_q.exp() * bounds).sum(-1)  # [bs]
        return -bound, {}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_tuples={self.max_tuples}"


FAMILIES = (EstimatorFamily(name="exact", grammar="exact", ids={"exact": (ExactEnumeration, {})}, examples=("exact",),
                            label="exact gradient", style=Style("#000000", (0, 0), linestyle=":"),
    table=(
        (
            "`exact`",
            ("the exact gradient, by enumerating every joint latent state and K-tuple (zero variance; models with "
             "few discrete latents)"),
            "∇ L_K",
        ),
    )),)
