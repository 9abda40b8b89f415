"""The base class of the estimators, ``GradientEstimator``: its capabilities (class data, read by
the registry, the front ends and the trainer), the model checks and the call protocol
(docs/DESIGN.md, section 3). The particle bookkeeping it runs on is ``particles.py``.
"""
import weakref
from abc import ABCMeta, abstractmethod
from typing import Dict, FrozenSet, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..models.sampling import LatentSampler
from .particles import (Particles, RuntimeOptions, base_diagnostics, model_diagnostics, particles_from_log_probs,
                        sample_particles)

LATENT_TYPES = frozenset({"bernoulli", "categorical", "gaussian"})


class GradientEstimator(nn.Module, metaclass=ABCMeta):
    """Base class of the estimators: ``Estimator(mc, iw, **config)`` then
    ``loss, diagnostics, output = estimator(model, x, backward=False, **runtime)``.

    ``loss [bs]`` is a per-data-point surrogate: the gradient of ``loss[i]`` is the estimator's
    estimate of the gradient of ``-L`` at data point i, that of ``loss.mean()`` of the batch mean of
    ``-L``. A training step calls it with ``backward=True`` (``backward``: own parameters with an
    objective of their own get its gradient there). Subclasses define
    ``surrogate`` and may change the particle layout (``layout``), the sampling mode
    (``reparam``), the inference density (``log_q``) and the particles that define the
    reported bound (``bound_particles``).

    Args:
        mc: outer Monte-Carlo samples M (bounds averaged), >= 1.
        iw: importance samples K per bound, >= 1.
        x_shape: shape of one data point (used by estimators with a neural baseline; the
            trainer always passes it).
        alpha, beta, tau, freebits: default runtime options, overridable at every call.
    """
    # Capabilities: class data, read by the registry, the front ends and the trainer (docs/DESIGN.md, 3a).
    reparam = False  # sample z with rsample (pathwise gradients)
    needs_model = False  # True: the surrogate calls the model again (not possible from log-densities)
    compile_problem: Optional[str] = None  # why torch.compile cannot trace a training call (None: it can)
    latent_types: FrozenSet[str] = LATENT_TYPES  # the model latent types it accepts
    min_mc = 1  # smallest number of outer Monte-Carlo samples it is defined for
    min_iw = 1  # smallest number of importance samples it is defined for
    owns_parameters = False  # has its own trainable parameters (baselines, learned control variates)
    own_objective: Optional[str] = None  # what its own parameters minimise when that is not the loss: they are
    # trained by the step's backward pass (``backward``), not by ``loss.mean().backward()``
    unbiased_for = "biased"  # the objective whose gradient it estimates without bias, e.g. "∇ L_K"
    stops_q_parameters = False  # log q evaluated with q's parameters stopped (front ends re-evaluate q)
    needs_latents = False  # loss_from_log_probs needs latents= (it rescales their gradients)
    sleep_phase = False  # trains q on dreams from p (front ends add the sleep loss)
    baseline_options: Tuple[str, ...] = ()  # constructor options of its neural baseline (run.py sets them)
    input_baseline_option: Optional[str] = None  # constructor option (a width) of an input-dependent baseline
    # of its score term, trained by its own objective (run.py's --rebar_baseline_hdim sets it)
    noise_quadrature_nodes: Optional[int] = None  # draws its own uniform noise: Gauss-Legendre nodes per
    # interval that integrate its gradient over that noise (1: exact); None: its randomness is the particles
    joint_samples = False  # draws the mc samples of a data point together (ARMS' copula): the law of a tuple of
    # particles is its tuple_probabilities(p, latents), not a product of q's

    def __init__(self, mc: int = 1, iw: int = 1, x_shape: Optional[Tuple[int, ...]] = None,
                 alpha: float = 0.0, beta: float = 1.0, tau: float = 0.0, freebits: Optional[float] = None):
        super().__init__()
        for name, value in (("mc", mc), ("iw", iw)):
            if isinstance(value, bool) or not float(value).is_integer() or value < 1:
                raise ValueError(f"{name}={value!r}: expected an integer >= 1")
        self.mc, self.iw = int(mc), int(iw)
        for name, value, least in (("mc", self.mc, self.min_mc), ("iw", self.iw, self.min_iw)):
            if value < least:
                raise ValueError(f"{type(self).__name__} needs {name} >= {least}, got {name}={value}; "
                                 f"use {name}={least} or more")
        self.x_shape = None if x_shape is None else tuple(x_shape)
        self.defaults = RuntimeOptions(alpha, beta, tau, freebits)
        # the model whose probe pass succeeded, by weak reference: a freed model's address (id) may be reused
        self._probed: Optional[weakref.ref] = None

    @property
    def layout(self) -> Tuple[int, int]:
        """``(mc, iw)`` of the forward pass (e.g. ``(mc, iw + S)`` for exclusive OVIS-MC)."""
        return self.mc, self.iw

    def model_evaluations(self, latent_size: Optional[int] = None) -> int:
        """Forward passes of the generative model per data point per training step (``latent_size``:
        the number of latent units, for estimators whose count depends on it)."""
        mc, iw = self.layout
        return mc * iw

    def particle_shape(self, bs: int) -> Tuple[int, int, int]:
        """``(bs, mc, n)``: the shape of the ``log_p`` and ``log_q`` that ``loss_from_log_probs``
        takes (``(mc, n) = layout``). Own sampling code draws ``mc * n`` particles per data point
        (data point slowest, ``x.repeat_interleave(mc * n, 0)``) and views its log-densities as
        this shape; ``n`` is ``iw`` plus the auxiliary particles of exclusive OVIS-MC."""
        mc, n = self.layout
        return int(bs), mc, n

    def check_model(self, model: nn.Module) -> None:
        """Raise ``ValueError`` if ``model`` cannot be trained by this estimator."""
        if self.reparam and not getattr(model, "supports_reparam", False):
            raise ValueError(f"{type(self).__name__} needs pathwise (reparameterised) samples but the model "
                             f"does not support them (model.supports_reparam is False); use a "
                             f"score-function estimator such as ovis-gamma1, vimco-arithmetic or reinforce")
        from .registry import check_latent_type  # the registry names the estimators that accept the model
        check_latent_type(type(self), model)

    def probe(self, model: nn.Module, sampler: Optional[LatentSampler] = None) -> Optional[Dict]:
        """``probe_pass`` for the checks of ``check_model``; None when ``x_shape`` is unknown or
        ``model`` was probed before (``forward`` calls ``check_model`` at every step)."""
        probed = self._probed is not None and self._probed() is model
        if self.x_shape is None or next(model.parameters(), None) is None or probed:
            return None
        output = self.probe_pass(model, sampler)
        self._probed = weakref.ref(model)
        return output

    def probe_pass(self, model: nn.Module, sampler: Optional[LatentSampler] = None) -> Dict:
        """The output of one pass of ``model`` (with ``sampler``) on two zero data points of shape
        ``x_shape``, in eval mode (no batch-statistics update), without gradient, and with the
        random streams restored after it (it does not shift a seeded run's draws)."""
        reference = next(model.parameters())
        training = model.training
        model.eval()
        try:
            with torch.random.fork_rng(devices=[reference.device] if reference.is_cuda else []), torch.no_grad():
                x = torch.zeros(2, *self.x_shape, dtype=reference.dtype, device=reference.device)
                return model(x) if sampler is None else model(x, sampler=sampler)
        finally:
            model.train(training)

    def check_sampler(self, model: nn.Module, sampler: LatentSampler, needs: str) -> Optional[Dict]:
        """Raise ``ValueError`` unless ``model`` takes latent samplers (``accepts_sampler``) and a
        probe pass with ``sampler`` succeeds (the sampler raises for latents it cannot handle).
        Returns the probe pass's output (None: no probe pass, see ``probe``)."""
        if not getattr(model, "accepts_sampler", False):
            raise ValueError(f"{type(self).__name__} {needs}: the model must define forward(x, sampler=...) and "
                             f"declare accepts_sampler = True (see ovis.models.base.TemplateModel and "
                             f"docs/DESIGN.md, section 1b)")
        return self.probe(model, sampler)

    def check_options(self, options: RuntimeOptions) -> None:
        """Raise ``ValueError``, with the fix, for runtime options the estimator does not support."""

    @classmethod
    def check_log_densities_suffice(cls, name: Optional[str] = None) -> None:
        """Raise ``ValueError`` for an estimator that evaluates the model again inside its gradient
        (``needs_model``): it cannot run from per-particle log-densities (``loss_from_log_probs``,
        black-box objects). ``name``: how the message calls it (default: the class name)."""
        if cls.needs_model:
            raise ValueError(f"{name or cls.__name__} evaluates the model again inside its gradient (a sleep phase, "
                             f"or relaxed, antithetic or mean-field latents), so it cannot run from log-densities "
                             f"alone: call it on a model object (estimator(model, x); a TemplateModel, "
                             f"docs/DESIGN.md section 1b), or use a score-function estimator such as ovis-gamma1, "
                             f"vimco-arithmetic, nvil or reinforce-loo")

    def log_q(self, q: Distribution, z: Tensor) -> Tensor:
        """The inference density of a latent group as the estimator evaluates it."""
        return q.log_prob(z)

    def bound_particles(self, particles: Particles) -> Particles:
        """The particles whose bound the estimator trains (reported as ``loss/L_k``)."""
        return particles

    @abstractmethod
    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Return the per-data-point surrogate loss ``[bs]`` and the estimator's own diagnostics."""

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        """The particles of one step (estimators that control the draws override this)."""
        mc, iw = self.layout
        return sample_particles(model, x, mc, iw, self.reparam, options, self.log_q)

    def forward(self, model: nn.Module, x: Tensor, backward: bool = False, return_diagnostics: bool = True,
                **runtime) -> Tuple[Tensor, Dict[str, Tensor], Dict]:
        """``x [bs, *D]``; ``backward=True`` runs the training step's backward pass (``backward``);
        ``runtime``: alpha, beta, tau, freebits. Returns ``(loss [bs], diagnostics, model output of
        the forward pass)``; ``loss[i]`` is data point i's surrogate."""
        options = self.defaults.updated(runtime)
        self.check_options(options)
        self.check_model(model)
        particles = self.sample(model, x, options)
        loss, diagnostics = self._loss(model, x, particles, options, return_diagnostics)  # [bs]
        if backward:
            self.backward(loss, particles)
        return loss, diagnostics, particles.output

    def backward(self, loss: Tensor, particles: Particles) -> None:
        """The backward pass of a training step (``forward(..., backward=True)``, which the trainer
        calls): the gradient of ``loss.mean()`` into the ``.grad`` of the model's parameters and of
        the estimator's own. An estimator whose own parameters minimise an objective of their own
        (``own_objective``) overrides it: its ``loss`` trains the model only, and this pass also
        gives its parameters the gradient of that objective (from ``particles.backward_terms``)."""
        loss.mean().backward()

    def loss_from_log_probs(self, log_p: Tensor, log_q: Tensor, x: Optional[Tensor] = None,
                            return_diagnostics: bool = True, latents: Optional[List[Tensor]] = None,
                            **runtime) -> Tuple[Tensor, Dict[str, Tensor]]:
        """The estimator on per-particle log-densities (docs/DESIGN.md, section 1b).

        ``log_p [bs, mc, iw]``: log p(x, z_k), with the graph of the generative parameters;
        ``log_q [bs, mc, iw]``: log q(z_k | x), with the graph of the inference parameters (for a
        pathwise estimator, z_k drawn with ``rsample`` so that both carry the path). ``x [bs, *D]``
        is needed only by estimators with an input-dependent baseline. ``stl`` and ``dreg`` take
        ``log_q`` evaluated with q's parameters stopped (the path through z kept), and ``dreg``
        the rsampled latents ``latents`` (list of ``[bs * mc * iw, ...]`` tensors, data point
        slowest) whose gradients it rescales. ``mc`` and ``iw`` are read
        from the shapes. Returns ``(loss [bs], diagnostics)``; ``loss.mean()`` is the surrogate of
        the batch mean of ``-L``: the logsumexp over particles is per data point, the mean after.
        """
        options = self.defaults.updated(runtime)
        self.check_log_densities_suffice()
        if options.beta != 1.0 or options.freebits is not None:
            raise ValueError("beta != 1 and free bits need log p(x|z) and log p(z) separately; "
                             "loss_from_log_probs takes the joint log p(x, z): use beta=1, freebits=None")
        self.check_options(options)
        particles = particles_from_log_probs(log_p, log_q, latents)
        if particles.log_px.shape[1:] != torch.Size(self.layout):
            mc, n = self.layout
            raise ValueError(f"log-densities of shape {tuple(log_p.shape)} do not match this estimator's particle "
                             f"layout [bs, mc, n] = [bs, {mc}, {n}]: draw mc * n = {mc * n} particles per data point "
                             f"(estimator.particle_shape(bs) gives the shape to sample)")
        return self._loss(None, x, particles, options, return_diagnostics)

    def _loss(self, model: Optional[nn.Module], x: Optional[Tensor], particles: Particles,
              options: RuntimeOptions, return_diagnostics: bool) -> Tuple[Tensor, Dict[str, Tensor]]:
        loss, own_diagnostics = self.surrogate(model, x, particles, options)  # [bs]
        diagnostics = {}
        if return_diagnostics:
            diagnostics = base_diagnostics(self.bound_particles(particles), options)
            diagnostics.update({k: v.detach() for k, v in own_diagnostics.items()})
            diagnostics.update(model_diagnostics(particles.output, particles.log_px.shape[0]))
        return loss, diagnostics

    def extra_repr(self) -> str:
        return f"mc={self.mc}, iw={self.iw}"
