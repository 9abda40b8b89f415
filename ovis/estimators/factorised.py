"""Factorised discrete latents seen as categorical units: what the enumerating estimators
(``exact``, ``indecater``) and the linear control variates of ``double-cv`` need from a model.

A Bernoulli group ``z [rows, N]`` is N units with the categories (0, 1) and the probabilities
``(1 - sigmoid(a), sigmoid(a))``; a one-hot categorical group ``z [rows, N, C]`` is N units with
C categories. ``LatentGroup`` describes a group as a probe pass returned it; ``check_groups``
refuses, with the fix, the models an estimator cannot serve, before any work.
"""
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, constraints

from ..models.sampling import LatentSampler
from .base import GradientEstimator
from .particles import Particles, RuntimeOptions


@dataclass(frozen=True)
class LatentGroup:
    """One latent group: ``kind`` in ("bernoulli", "categorical", "gaussian", "other"),
    ``units`` N and ``categories`` C (2 for Bernoulli, 0 for continuous latents)."""
    kind: str
    units: int
    categories: int

    @property
    def states(self) -> int:
        """Joint states of the group: ``C ** N`` (0 for continuous latents)."""
        return self.categories ** self.units if self.categories else 0


def latent_kind(q: Distribution) -> str:
    base = q.base_dist if isinstance(q, Independent) else q
    if isinstance(base, Bernoulli):
        return "bernoulli"
    if base.support is constraints.one_hot:
        return "categorical"
    return "gaussian" if base.support is constraints.real else "other"


def latent_groups(output: Dict) -> List[LatentGroup]:
    """The groups of a model output (``qz`` and ``z``), top first."""
    groups = []
    for q, z in zip(output["qz"], output["z"]):
        kind = latent_kind(q)
        if kind == "categorical":
            groups.append(LatentGroup(kind, z[0].numel() // z.shape[-1], z.shape[-1]))
        else:
            groups.append(LatentGroup(kind, z[0].numel(), 2 if kind == "bernoulli" else 0))
    return groups


def check_groups(groups: Sequence[LatentGroup], name: str, latent_types: Sequence[str],
                 max_groups: Optional[int] = None) -> None:
    """Raise ``ValueError`` with the fix for latents outside ``latent_types`` or more than
    ``max_groups`` stochastic layers."""
    kinds = sorted({g.kind for g in groups} - set(latent_types))
    if kinds:
        raise ValueError(f"{name} needs {' or '.join(latent_types)} latents, the model has {', '.join(kinds)} "
                         f"latents: use a model with --prior {latent_types[0]} (e.g. --model sbm), or a "
                         f"score-function estimator such as ovis-gamma1 or vimco-arithmetic")
    if max_groups is not None and len(groups) > max_groups:
        raise ValueError(f"{name} needs a factorised q(z|x) with {max_groups} stochastic layer, the model has "
                         f"{len(groups)}: use --depth 1 (or --model vae --prior categorical), or an estimator "
                         f"for hierarchical models such as ovis-gamma1, vimco-arithmetic or disarm")


def unit_probabilities(q: Distribution) -> Tensor:
    """``[rows, N, C]`` probabilities of every category of every unit (with their graph)."""
    base = q.base_dist if isinstance(q, Independent) else q
    if isinstance(base, Bernoulli):
        p = torch.sigmoid(base.logits)  # [rows, N]
        return torch.stack([1 - p, p], -1)
    return base.probs  # [rows, N, C]


def unit_indices(z: Tensor, group: LatentGroup) -> Tensor:
    """The category of every unit, ``[rows, N]`` (long)."""
    return z.argmax(-1) if group.kind == "categorical" else z.long()


def unit_values(indices: Tensor, group: LatentGroup, dtype: torch.dtype) -> Tensor:
    """Latent values from categories ``[..., N]``: the same values as a draw of the group."""
    if group.kind == "categorical":
        return F.one_hot(indices, group.categories).to(dtype)  # [..., N, C]
    return indices.to(dtype)  # [..., N]


class LeafSample(LatentSampler):
    """Draws each group with ``q.sample()`` and returns it as a leaf that requires grad
    (``values[group]``), so that the derivative of the pass with respect to the sampled latents
    is available (the linear control variates of ``double-cv``)."""

    def __init__(self):
        self.values: Dict[int, Tensor] = {}

    def keep(self, group: int, z: Tensor) -> Tensor:
        """``z`` as the leaf of ``group`` (test models that fix their latents hand them here)."""
        self.values[group] = z.detach().requires_grad_()
        return self.values[group]

    def __call__(self, group: int, q: Distribution) -> Tensor:
        return self.keep(group, q.sample())


class DiscreteLatentEstimator(GradientEstimator):
    """Base class of the estimators that read the structure of the model's latents: the probe
    pass (or, without ``x_shape``, the first step's pass, before any gradient work) must show
    groups of ``latent_types`` and at most ``max_groups`` of them (``check_groups``)."""
    needs_model = True
    latent_types = frozenset({"bernoulli", "categorical"})
    unbiased_for = "∇ L_K"
    max_groups: Optional[int] = None

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.groups: Optional[List[LatentGroup]] = None

    def check_model(self, model) -> None:
        super().check_model(model)
        output = self.probe(model)
        if output is not None:
            self.check_groups(latent_groups(output))

    def check_groups(self, groups: List[LatentGroup]) -> None:
        name = getattr(self, "name", type(self).__name__)
        check_groups(groups, name, sorted(self.latent_types), self.max_groups)
        self.groups = list(groups)

    def sample(self, model, x: Tensor, options: RuntimeOptions) -> Particles:
        particles = super().sample(model, x, options)
        if self.groups is None:
            self.check_groups(latent_groups(particles.output))
        return particles
