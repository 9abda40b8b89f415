"""Samplers: how a model draws its latents (docs/DESIGN.md, section 1b).

A model draws every latent group through ``sampler(group, q) -> z``: ``group`` is the index of
the group in the lists the model returns (top first), ``q`` the inference distribution of that
group given what was drawn before it. Whatever the sampler returns is used downstream (the next
layer of q, p(z), p(x|z)) and returned in ``z``. This one hook lets estimators sample with or
without pathwise gradients (``Sample``), evaluate a model at given latents (``Given``), and
control the uniform noise behind each draw (``NoiseSampler``: antithetic pairs, the hard and
relaxed passes of REBAR and RELAX) without the model knowing about any of them.
"""
from typing import Dict, List, Optional

import torch
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, constraints

# Uniform noise is kept inside [EPS, 1 - EPS] so that logit(u) stays finite in float32.
UNIFORM_EPS = 1e-6


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


def bernoulli_logits(q: Distribution) -> Tensor:
    """The logits of a Bernoulli q (plain or wrapped in ``Independent``), or a clear error."""
    base = q.base_dist if isinstance(q, Independent) else q
    if not isinstance(base, Bernoulli):
        raise ValueError(f"this sampler needs Bernoulli latents, got {type(base).__name__}; estimators "
                         f"that control the noise of each draw (ARM, DisARM, REBAR, RELAX) apply to "
                         f"binary latents: use a model with prior='bernoulli' (e.g. --model sbm)")
    return base.logits


def logistic_noise(u: Tensor) -> Tensor:
    """``logit(u) = log u - log(1 - u)``: uniform noise mapped to a standard logistic variable."""
    return torch.log(u) - torch.log1p(-u)


def hard_bernoulli(logits: Tensor, u: Tensor) -> Tensor:
    """The exact Bernoulli draw ``H(logits + logit(u)) = 1[u > sigmoid(-logits)]``, no gradient.

    Written with the complement so that ``u`` and ``1 - u`` give the antithetic pair of ARM."""
    return (logits + logistic_noise(u) > 0).to(logits.dtype)


def relaxed_bernoulli(logits: Tensor, u: Tensor, tau: float) -> Tensor:
    """The Concrete relaxation ``sigmoid((logits + logit(u)) / tau)`` of ``hard_bernoulli``."""
    return torch.sigmoid((logits + logistic_noise(u)) / tau)


class MeanField(LatentSampler):
    """The mean-field pass of MuProp (Gu et al., 2016): each group is replaced by the mean of its
    q given the means of the groups drawn before it, returned as a new leaf that requires grad
    (kept in ``values[group]``), so that the derivative of any function of the pass with respect
    to each group's value is available. Log-densities are evaluated at these relaxed values."""
    draws = False

    def __init__(self):
        self.values: Dict[int, Tensor] = {}

    def __call__(self, group: int, q: Distribution) -> Tensor:
        support = (q.base_dist if isinstance(q, Independent) else q).support
        if support.is_discrete and support is not constraints.boolean and support is not constraints.one_hot:
            raise ValueError(f"the mean-field pass (MuProp) needs latents whose mean the model can take in place "
                             f"of a sample (Bernoulli, one-hot categorical, continuous), got "
                             f"{type(q).__name__} with values in {support}: use another estimator "
                             f"(e.g. ovis-gamma1, vimco-arithmetic, reinforce-loo) or a model with binary or "
                             f"one-hot latents (e.g. --model sbm)")
        self.values[group] = q.mean.detach().requires_grad_()
        return self.values[group]


class NoiseSampler(LatentSampler):
    """Draws each group from uniform noise ``u ~ U(0, 1)`` that it keeps in ``noise[group]``
    (the shape of one sample of ``q``), so that several passes can reuse the same noise, or a
    transform of it (pass ``noise=`` from an earlier sampler: ``{g: 1 - u}`` gives ARM's
    antithetic draw). Subclasses map ``(q, u)`` to a latent in ``transform``; this class draws the
    exact Bernoulli sample ``hard_bernoulli`` (so it samples q exactly, without gradient)."""

    def __init__(self, noise: Optional[Dict[int, Tensor]] = None, generator: Optional[torch.Generator] = None):
        self.noise: Dict[int, Tensor] = dict(noise or {})
        self.generator = generator

    def uniform(self, group: int, q: Distribution) -> Tensor:
        if group not in self.noise:
            logits = bernoulli_logits(q)
            # rand_like without a generator: torch.compile traces it at a symbolic batch size
            u = (torch.rand_like(logits, requires_grad=False) if self.generator is None else
                 torch.rand(logits.shape, dtype=logits.dtype, device=logits.device, generator=self.generator))
            self.noise[group] = u.clamp_(UNIFORM_EPS, 1 - UNIFORM_EPS)
        return self.noise[group]

    def transform(self, group: int, q: Distribution, u: Tensor) -> Tensor:
        return hard_bernoulli(bernoulli_logits(q).detach(), u)

    def __call__(self, group: int, q: Distribution) -> Tensor:
        return self.transform(group, q, self.uniform(group, q))


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


__all__ = ["LatentSampler", "Sample", "Given", "MeanField", "NoiseSampler", "bernoulli_logits", "logistic_noise",
           "hard_bernoulli", "relaxed_bernoulli", "resolve_sampler", "expand_to_particles", "check_particles",
           "UNIFORM_EPS"]
