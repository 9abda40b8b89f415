"""Estimators that control the uniform noise behind each Bernoulli draw (ARM, DisARM, REBAR, RELAX,
the relaxed and straight-through estimators): their common base class.

The samplers and the transforms of the noise: ``relaxations.py``. Each pass draws its latents
from uniform noise that the ``Particles`` of that pass keep (``particles.noise``: group ->
uniforms ``[rows, N_g]``), so that further passes reuse it or a transform of it.
"""
from contextlib import contextmanager
from typing import Dict, Iterator, Optional

import torch
from torch import Tensor, nn

from .base import GradientEstimator

from .particles import Particles, RuntimeOptions, sample_particles
from .relaxations import UNIFORM_EPS, Noise, NoiseSampler, bernoulli_logits


class ControlledNoiseEstimator(GradientEstimator):
    """Base class of the estimators that draw the latents themselves (module docstring).

    ``sample`` draws the hard particles with a ``NoiseSampler``; their noise (``particles.noise``:
    group -> uniforms ``[rows, N_g]``) serves the further passes of ``surrogate`` (``evaluate``).
    ``fixed_noise(u, v)`` replaces the random noise (tests integrate the estimators over it); ``v``
    is the second noise of REBAR and RELAX. ``latent_groups``: the stochastic layers of the model
    seen by the last probe pass (1 before any)."""
    needs_model = True
    latent_types = frozenset({"bernoulli"})
    unbiased_for = "∇ L_K"
    noise_streams = 1  # uniforms per latent unit and particle (REBAR and RELAX: 2)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._fixed: Optional[Dict[str, Noise]] = None
        self.latent_groups = 1

    def check_model(self, model: nn.Module) -> None:
        """The model must accept samplers that draw every latent group (Bernoulli latents)."""
        super().check_model(model)
        output = self.check_sampler(model, self.probe_sampler(), "controls the noise of every latent draw")
        if output is not None:
            self.latent_groups = len(output["z"])

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
        particles.noise = sampler.noise
        return particles


def group_logits(particles: Particles) -> Dict[int, Tensor]:
    """The logits ``[rows, N_g]`` of each group's q in a pass (with their graph)."""
    return {g: bernoulli_logits(q) for g, q in enumerate(particles.output["qz"])}


def group_samples(particles: Particles) -> Dict[int, Tensor]:
    """The latents ``[rows, N_g]`` of each group in a pass."""
    return dict(enumerate(particles.output["z"]))
