"""IndeCateR (De Smet, Sansone & Zuidberg Dos Martires, "Differentiable sampling of categorical
distributions using the CatLog-derivative trick", NeurIPS 2023): the score-function gradient
Rao-Blackwellised over each unit of a factorised discrete q.

For ``q(z|x) = prod_i q_i(z_i)`` (every unit i of every particle k of one layer, Bernoulli or
categorical) and ``f`` = the bound ``L`` of the particles::

    grad_phi E[f] = E[ grad_phi f |_z  +  sum_i sum_c grad_phi q_i(c) f(z_{-i}, z_i = c) ]

``f(z_{-i}, z_i = c)`` is the bound with particle k's log-weight replaced by the one of its
latents with unit i set to category c (``swapped_bounds``; the current category gives ``L``
itself). Each particle costs ``1 + N (C - 1)`` model evaluations (N units of C categories; one
batched pass without gradient for the changed particles). theta gets the exact gradient of
``L(z)``; unbiased for the gradient of L_K (the ELBO at iw = 1, the IW-Renyi bound at
alpha > 0), theta and phi. Needs a single stochastic layer (the units of a hierarchical q are
not independent).
"""
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from ..models.sampling import Given
from .antithetic import swapped_bounds
from .particles import Particles, RuntimeOptions, iw_bound, sample_particles
from .factorised import DiscreteLatentEstimator, unit_indices, unit_probabilities, unit_values
from .registry import EstimatorFamily, Style


class IndeCateR(DiscreteLatentEstimator):
    """IndeCateR (module docstring) for one layer of Bernoulli or categorical latents."""
    name = "indecater"
    max_groups = 1

    def model_evaluations(self, latent_size: Optional[int] = None) -> int:
        """``mc * iw * (1 + N (C - 1))``; ``latent_size``: N (C - 1) before the model is seen."""
        changes = latent_size if self.groups is None else self.groups[0].units * (self.groups[0].categories - 1)
        return self.mc * self.iw * (1 + (changes or 0))

    def changed_log_weights(self, model: nn.Module, x: Tensor, indices: Tensor, options: RuntimeOptions) -> Tensor:
        """Log-weights ``[bs, mc, K, N, C - 1]`` of every particle with one unit moved to each
        other category (``indices [bs, mc, K, N]``: the sampled categories); no gradient."""
        group = self.groups[0]
        bs, mc, K, N = indices.shape
        C = group.categories
        shifts = torch.arange(1, C, device=indices.device)  # [C - 1]
        eye = torch.eye(N, dtype=torch.long, device=indices.device)  # [N (changed unit), N]
        changed = (indices[..., None, None, :] + eye[:, None, :] * shifts[:, None]) % C  # [bs, mc, K, N, C-1, N]
        values = unit_values(changed.reshape(-1, N), group, x.dtype)  # [bs * mc * K * N * (C-1), N(, C)]
        with torch.no_grad():
            passes = sample_particles(model, x, 1, mc * K * N * (C - 1), False, options, sampler=Given([values]))
            return passes.log_weights(options).view(bs, mc, K, N, C - 1)

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        log_weights = particles.log_weights(options)  # [bs, mc, K], with the log q term
        bound = iw_bound(log_weights, options.alpha)  # [bs, mc]
        bs, mc, K = log_weights.shape
        group = self.groups[0]
        indices = unit_indices(particles.output["z"][0], group).view(bs, mc, K, -1)  # [bs, mc, K, N]
        changed = self.changed_log_weights(model, x, indices, options)  # [bs, mc, K, N, C-1]
        N = changed.shape[3]
        C = group.categories
        moved = changed.permute(0, 1, 3, 4, 2)  # [bs, mc, N, C-1, K]
        others = log_weights.detach()[:, :, None, None, :].expand_as(moved)  # [bs, mc, N, C-1, K]
        changed_bounds = swapped_bounds(others, moved, options.alpha).permute(0, 1, 4, 2, 3)  # [bs, mc, K, N, C-1]
        values = torch.cat([bound.detach()[..., None, None, None].expand(bs, mc, K, N, 1),
                            changed_bounds], -1)  # [bs, mc, K, N, C]: f(z_-i, z_i = current + j)
        probs = unit_probabilities(particles.output["qz"][0]).view(bs, mc, K, N, -1)  # [bs, mc, K, N, C]
        order = (indices[..., None] + torch.arange(C, device=x.device)) % C  # [bs, mc, K, N, C]
        rao_blackwellised = (probs.gather(-1, order) * values).sum((2, 3, 4))  # [bs, mc]
        phi_term = rao_blackwellised - rao_blackwellised.detach()  # value 0, gradient of the sum over i, c
        return -(bound + phi_term).mean(1), {}


FAMILIES = (EstimatorFamily(name="indecater", grammar="indecater", ids={"indecater": (IndeCateR, {})},
                            examples=("indecater",), label="IndeCateR", style=Style("#e6550d", (10, 2)),
    table=(
        (
            "`indecater`",
            ("IndeCateR (De Smet et al. 2023): per-unit Rao-Blackwellised score function, Bernoulli or categorical"
             " latents, one layer"),
            "∇ L_K",
        ),
    )),)
