"""Estimators that control the uniform noise behind each Bernoulli draw (ARM, DisARM, REBAR, RELAX,
the relaxed and straight-through estimators): the samplers they hand to the model and their
common base class.

Noise. Each latent unit of group g is drawn from ``u ~ U(0, 1)``: the hard sample is
``b = H(a + logit u)`` (``a`` the logits of q), the Concrete relaxation at temperature ``lam`` is
``sigmoid((a + logit u) / lam)`` (Maddison et al., 2017; Jang et al., 2017). REBAR's conditional
noise (Tucker et al., 2017, appendix): given ``b`` and ``theta = sigmoid(a)``, ``u | b`` is uniform
on ``(1 - theta, 1)`` if ``b = 1`` and on ``(0, 1 - theta)`` if ``b = 0``; with ``v ~ U(0, 1)``::

    u_tilde = b (1 - theta + v theta) + (1 - b) v (1 - theta)

is a draw of ``u | b`` that is differentiable in ``a`` (the conditional reparameterisation). The
REBAR code takes ``u`` itself as that draw: ``v`` is the position of ``u`` in its interval
(``interval_position``), so ``u_tilde`` equals ``u`` in value and keeps the conditional gradient.
The REBAR code's relaxation (``muprop_relaxation``) adds ``a lam / (lam + 1)`` to the Concrete's
logit: ``sigmoid((a + logit u) / lam + a lam / (lam + 1))``; it also tends to ``b`` as lam -> 0.
Hierarchical q: the model computes each group's ``q`` from what the sampler returned for its
parents, so a relaxed pass relaxes every group and the relaxation is a differentiable function
of the noise of all groups.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
from torch import Tensor, nn
from torch.distributions import Distribution
import torch.nn.functional as F

from ..models.sampling import (NoiseSampler, bernoulli_logits, hard_bernoulli, logistic_noise, relaxed_bernoulli,
                               UNIFORM_EPS)
from .base import GradientEstimator, Particles, RuntimeOptions, sample_particles

Noise = Dict[int, Tensor]
RELAXATIONS = ("concrete", "muprop")  # the Concrete; the REBAR code's muprop_relaxation (module docstring)


def conditional_uniform(v: Tensor, b: Tensor, logits: Tensor) -> Tensor:
    """REBAR's ``u_tilde ~ u | b`` from ``v ~ U(0, 1)`` (module docstring); differentiable in ``logits``."""
    theta = torch.sigmoid(logits)
    u = torch.where(b > 0.5, 1 - theta + v * theta, v * (1 - theta))
    return u.clamp(UNIFORM_EPS, 1 - UNIFORM_EPS)


def interval_position(u: Tensor, b: Tensor, logits: Tensor) -> Tensor:
    """The ``v`` for which ``conditional_uniform(v, b, logits)`` is ``u`` (no gradient): where ``u``
    lies in its interval ``(1 - theta, 1)`` (b = 1) or ``(0, 1 - theta)`` (b = 0)."""
    theta = torch.sigmoid(logits.detach())
    v = torch.where(b > 0.5, (u - 1 + theta) / theta, u / (1 - theta))
    return v.clamp(0, 1)


class RelaxedSampler(NoiseSampler):
    """The Concrete relaxation ``sigmoid((a + logit u) / temperature)`` of each Bernoulli group,
    differentiable in the logits ``a``. With ``straight_through`` the value is the hard sample
    ``H(a + logit u)`` and the gradient that of the relaxation (straight-through Gumbel).
    Categorical groups (``q.logits [.., C]``) get the Gumbel-softmax sample instead (fresh noise).
    ``relaxation="muprop"``: the REBAR code's relaxation (module docstring) instead of the Concrete."""

    def __init__(self, temperature: float, noise: Optional[Noise] = None, straight_through: bool = False,
                 relaxation: str = "concrete"):
        super().__init__(noise)
        self.temperature, self.straight_through = temperature, straight_through  # a tensor keeps its graph
        self.relaxation = relaxation

    def __call__(self, group: int, q: Distribution) -> Tensor:
        if q.event_shape:  # one-hot categorical
            return F.gumbel_softmax(q.logits, tau=float(self.temperature), hard=self.straight_through, dim=-1)
        return self.transform(group, q, self.uniform(group, q))

    def transform(self, group: int, q: Distribution, u: Tensor) -> Tensor:
        logits = bernoulli_logits(q)
        if self.relaxation == "muprop":
            lam = self.temperature
            relaxed = torch.sigmoid((logits + logistic_noise(u)) / lam + logits * (lam / (lam + 1)))
        else:
            relaxed = relaxed_bernoulli(logits, u, self.temperature)
        if not self.straight_through:
            return relaxed
        return hard_bernoulli(logits.detach(), u) + (relaxed - relaxed.detach())


class PartlyRelaxedSampler(RelaxedSampler):
    """``RelaxedSampler`` whose row r draws its first ``hard_draws[r]`` groups hard
    (``H(a + logit u)``, no gradient) and relaxes the later ones (the REBAR code's per-layer control
    variates). ``order``: the groups in the order drawn."""

    def __init__(self, temperature: float, noise: Noise, hard_draws: Tensor, relaxation: str = "concrete"):
        super().__init__(temperature, noise, relaxation=relaxation)
        self.hard_draws, self.order = hard_draws, []  # [rows]

    def transform(self, group: int, q: Distribution, u: Tensor) -> Tensor:
        relaxed = super().transform(group, q, u)  # [rows, N_g]
        hard = (self.hard_draws > len(self.order)).unsqueeze(-1)  # [rows, 1]
        self.order.append(group)
        return torch.where(hard, hard_bernoulli(bernoulli_logits(q).detach(), u), relaxed)


class ControlledNoiseEstimator(GradientEstimator):
    """Base class of the estimators that draw the latents themselves (module docstring).

    ``sample`` draws the hard particles with a ``NoiseSampler`` and keeps its noise
    (``self.noise``: group -> uniforms ``[rows, N_g]``) for the further passes of ``surrogate``
    (``evaluate``). ``fixed_noise(u, v)`` replaces the random noise (tests integrate the
    estimators over it); ``v`` is the second noise of REBAR and RELAX."""
    needs_model = True
    latent_types = frozenset({"bernoulli"})
    unbiased_for = "∇ L_K"
    noise_streams = 1  # uniforms per latent unit and particle (REBAR and RELAX: 2)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fixed: Optional[Dict[str, Noise]] = None
        self.noise: Noise = {}

    def check_model(self, model: nn.Module) -> None:
        """The model must accept samplers that draw every latent group (Bernoulli latents)."""
        super().check_model(model)
        self.check_sampler(model, self.probe_sampler(), "controls the noise of every latent draw")

    def probe_sampler(self):
        return NoiseSampler()

    @contextmanager
    def fixed_noise(self, u: Noise, v: Optional[Noise] = None) -> Iterator[None]:
        """Calls inside use the uniforms ``u`` (and ``v``): group -> ``[rows, N_g]``, rows = bs * mc * iw."""
        self._fixed = {"u": dict(u), "v": dict(v or {})}
        try:
            yield
        finally:
            self._fixed = None

    def second_noise(self, like: Noise) -> Noise:
        """Fresh uniforms ``v`` of the shapes of ``like`` (or the fixed ones)."""
        if self._fixed is not None and self._fixed["v"]:
            return self._fixed["v"]
        return {g: torch.rand_like(u).clamp_(UNIFORM_EPS, 1 - UNIFORM_EPS) for g, u in like.items()}

    def evaluate(self, model: nn.Module, x: Tensor, sampler, options: RuntimeOptions) -> Particles:
        """One pass of the model with ``sampler`` for the layout's particles."""
        mc, iw = self.layout
        return sample_particles(model, x, mc, iw, False, options, self.log_q, sampler=sampler)

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        sampler = NoiseSampler(None if self._fixed is None else self._fixed["u"])
        particles = self.evaluate(model, x, sampler, options)
        self.noise = sampler.noise
        return particles


def group_logits(particles: Particles) -> Dict[int, Tensor]:
    """The logits ``[rows, N_g]`` of each group's q in a pass (with their graph)."""
    return {g: bernoulli_logits(q) for g, q in enumerate(particles.output["qz"])}


def group_samples(particles: Particles) -> Dict[int, Tensor]:
    """The latents ``[rows, N_g]`` of each group in a pass."""
    return dict(enumerate(particles.output["z"]))
