"""Samplers: how a model draws its latents (docs/DESIGN.md, section 1b).

A model draws every latent group through ``sampler(group, q) -> z``: ``group`` is the index of
the group in the lists the model returns (top first), ``q`` the inference distribution of that
group given what was drawn before it. Whatever the sampler returns is used downstream (the next
layer of q, p(z), p(x|z)) and returned in ``z``. This one hook lets estimators sample with or
without pathwise gradients (``Sample``), evaluate a model at given latents (``Given``), and
control the uniform noise behind each draw (``ovis.estimators.relaxations``: antithetic pairs,
the hard and relaxed passes of REBAR and RELAX) without the model knowing about any of them.
"""
from typing import List, Optional

from torch import Tensor
from torch.distributions import Distribution


class LatentSampler:
    """Base class: ``__call__(group, q) -> z`` (see the module docstring).

    ``draws``: whether the sampler draws random latents (True) or evaluates the model at values
    it is given or computes (``Given``, MuProp's mean-field pass: False). Test models that fix
    their latents (``EnumerableModel.fixed_latents``) replace only the drawing samplers."""
    draws = True

    def __call__(self, group: int, q: Distribution) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must define __call__(group, q) -> z")


class Sample(LatentSampler):
    """The default: ``q.rsample()`` when ``reparam`` (pathwise gradients), else ``q.sample()``."""

    def __init__(self, reparam: bool = False):
        self.reparam = bool(reparam)

    def __call__(self, group: int, q: Distribution) -> Tensor:
        return q.rsample() if self.reparam else q.sample()


class Given(LatentSampler):
    """Evaluate the model at the given latents ``z`` (list, top first, ``[rows, ...]`` each)."""
    draws = False

    def __init__(self, z: List[Tensor]):
        self.z = list(z)

    def __call__(self, group: int, q: Distribution) -> Tensor:
        if not 0 <= group < len(self.z):
            raise ValueError(f"the model asked for latent group {group}, but {len(self.z)} were given "
                             f"(z is a list with one tensor per latent group, top first)")
        z = self.z[group]
        rows = q.batch_shape[0] if len(q.batch_shape) else None
        if rows is not None and z.shape[0] != rows:
            raise ValueError(f"given latent z[{group}] has {z.shape[0]} rows, the model's q has {rows}")
        return z


def resolve_sampler(sampler: Optional[LatentSampler], reparam: bool = False,
                    z: Optional[List[Tensor]] = None) -> LatentSampler:
    """The sampler a model's ``forward`` uses: ``sampler``, else ``Given(z)``, else ``Sample(reparam)``."""
    if sampler is not None and z is not None:
        raise ValueError("give either sampler= or z= (z is a shorthand for sampler=Given(z)), not both")
    if sampler is not None:
        return sampler
    return Given(z) if z is not None else Sample(reparam)


def expand_to_particles(values: Tensor, particles: Optional[int]) -> Tensor:
    """``[bs, ...] -> [bs * particles, ...]``: each row repeated ``particles`` times in a row (data
    point slowest); the gradient of the result sums over the particles. No-op when None."""
    if particles is None or particles == 1:
        return values
    bs = values.shape[0]
    return values.unsqueeze(1).expand(bs, particles, *values.shape[1:]).reshape(bs * particles, *values.shape[1:])


def check_particles(particles: Optional[int]) -> None:
    if particles is not None and (isinstance(particles, bool) or int(particles) != particles or particles < 1):
        raise ValueError(f"particles={particles!r}: expected an integer >= 1 (rows per data point)")


__all__ = ["LatentSampler", "Sample", "Given", "resolve_sampler", "expand_to_particles", "check_particles"]
