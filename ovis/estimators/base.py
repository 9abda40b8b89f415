"""Particle bookkeeping shared by every estimator: one place that expands the data, runs the
model once, reduces log-densities per particle and computes log-weights, the bound and the
base diagnostics.

Layout. A batch ``x [bs, *D]`` is repeated ``mc * iw`` times, data point slowest, then the
outer Monte-Carlo sample, then the importance sample, and flattened to ``rows = bs * mc * iw``
rows for a single forward pass of the model. Every per-row log-density is summed over its
non-batch dimensions and viewed as ``[bs, mc, iw]`` (``[bs, mc, iw, G]`` per latent group).
Reductions over particles happen per data point and per mc sample, never across the batch.

Log-weights and bound, with runtime options alpha (Renyi), beta (KL weight) and
free bits::

    KL_g = log q(z_g | x) - log p(z_g)        (clamped below at ``freebits`` per particle and group)
    l_k  = (1 - alpha) * (log p(x | z_k) - beta * sum_g KL_g)
    L    = (logsumexp_k l_k - log K) / (1 - alpha)

alpha = 0, beta = 1 gives the importance weighted bound L_K of Burda et al. (2016);
alpha in (0, 1) the importance weighted Renyi bound (Li & Turner, 2016).
"""
import math
import weakref
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, FrozenSet, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..models.sampling import LatentSampler, expand_to_particles

RUNTIME_OPTIONS = ("alpha", "beta", "tau", "freebits")
LATENT_TYPES = frozenset({"bernoulli", "categorical", "gaussian"})


@dataclass(frozen=True)
class RuntimeOptions:
    """Options that may change at every call (schedules) and that the model also receives.

    ``alpha`` in [0, 1): Renyi parameter of the bound; ``beta`` >= 0: weight of the KL term;
    ``tau`` >= 0: relaxation temperature for models with relaxed latents; ``freebits``: lower
    bound on each group's KL term, per data point and particle (None: off).
    """
    alpha: float = 0.0
    beta: float = 1.0
    tau: float = 0.0
    freebits: Optional[float] = None

    def __post_init__(self):
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"alpha={self.alpha!r}: the Renyi parameter must be in [0, 1)")
        if not self.beta >= 0.0:
            raise ValueError(f"beta={self.beta!r}: the KL weight must be >= 0")
        if not self.tau >= 0.0:
            raise ValueError(f"tau={self.tau!r}: the temperature must be >= 0")

    def updated(self, overrides: Dict) -> "RuntimeOptions":
        unknown = sorted(set(overrides) - set(RUNTIME_OPTIONS))
        if unknown:
            raise ValueError(f"unknown runtime option(s) {unknown}; an estimator call accepts "
                             f"{list(RUNTIME_OPTIONS)} (structural options belong to the constructor)")
        if not overrides:
            return self
        values = {k: (None if v is None else float(v)) for k, v in overrides.items()}
        values = {k: v for k, v in values.items() if v is not None or k == "freebits"}
        return replace(self, **values)

    def model_kwargs(self) -> Dict[str, float]:
        """The options forwarded to ``model.forward`` (those that are set)."""
        kwargs = {"alpha": self.alpha, "beta": self.beta, "tau": self.tau}
        if self.freebits is not None:
            kwargs["freebits"] = self.freebits
        return kwargs


def reduce_rows(log_prob: Tensor, rows: int, what: str) -> Tensor:
    """Sum a log-density over every dimension after the first: ``[rows, ...] -> [rows]``."""
    if log_prob.dim() == 0 or log_prob.shape[0] != rows:
        raise ValueError(f"{what}.log_prob returned shape {tuple(log_prob.shape)}; expected a first "
                         f"dimension of {rows} rows (data points x mc x iw)")
    return log_prob if log_prob.dim() == 1 else log_prob.sum(dim=tuple(range(1, log_prob.dim())))


@dataclass
class Particles:
    """The record of one forward pass: the log-densities of its particles and what drew them.

    ``log_px [bs, mc, iw]``: log p(x | z); ``log_qz``, ``log_pz [bs, mc, iw, G]``: log q and
    log p of each latent group; ``output``: the model's output dict for the ``bs * mc * iw`` rows;
    ``noise``: the uniforms behind each group's draws (group -> ``[rows, N_g]``; estimators that
    draw the latents from noise, ``ovis.estimators.relaxations``), reused by their further passes;
    ``backward_terms``: what ``surrogate`` leaves for the estimator's own backward pass
    (``GradientEstimator.backward``; learned control variates).
    """
    log_px: Tensor
    log_qz: Tensor
    log_pz: Tensor
    output: Dict
    noise: Dict[int, Tensor] = field(default_factory=dict)
    backward_terms: Optional[Dict] = None
    # log_weights by (options, detach_q): the surrogate's and the diagnostics' are the same tensor
    _log_weights: Dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def iw(self) -> int:
        return self.log_px.shape[-1]

    def narrow(self, start: int, length: int) -> "Particles":
        """The particles ``start .. start + length - 1`` of every (data point, mc) pair."""
        return Particles(self.log_px.narrow(2, start, length), self.log_qz.narrow(2, start, length),
                         self.log_pz.narrow(2, start, length), self.output)

    def kl(self, options: RuntimeOptions, detach_q: bool = False) -> Tensor:
        """Per-group KL terms ``[bs, mc, iw, G]``, free bits applied."""
        log_qz = self.log_qz.detach() if detach_q else self.log_qz
        kl = log_qz - self.log_pz
        return kl if options.freebits is None else kl.clamp(min=options.freebits)

    def log_weights(self, options: RuntimeOptions, detach_q: bool = False) -> Tensor:
        """``l_k = (1 - alpha) (log p(x|z_k) - beta KL_k)``, ``[bs, mc, iw]``; ``detach_q``
        stops the gradient of log q (score-function estimators add it through their own term)."""
        key = (options, detach_q)
        if key not in self._log_weights:
            kl = self.kl(options, detach_q).sum(-1)  # [bs, mc, iw]
            log_weights = self.log_px - (kl if options.beta == 1 else options.beta * kl)  # [bs, mc, iw]
            self._log_weights[key] = log_weights if options.alpha == 0 else (1 - options.alpha) * log_weights
        return self._log_weights[key]

    def log_weight_values(self, options: RuntimeOptions) -> Tensor:
        """The values of ``log_weights(options)`` for use without gradient: the tensor already
        computed, with or without the gradient of log q, where there is one."""
        computed = self._log_weights.get((options, False))
        return self.log_weights(options, detach_q=True) if computed is None else computed

    def free_bits_active(self, options: RuntimeOptions) -> Optional[Tensor]:
        """``[bs, mc, iw, G]`` boolean, True where a group's KL is above the free-bits floor
        (so that log q has a gradient there); None when free bits are off."""
        if options.freebits is None:
            return None
        return (self.log_qz - self.log_pz).detach() > options.freebits


def iw_bound(log_weights: Tensor, alpha: float = 0.0) -> Tensor:
    """``(logsumexp_k l_k - log K) / (1 - alpha)``: ``[..., K] -> [...]``."""
    bound = torch.logsumexp(log_weights, dim=-1) - math.log(log_weights.shape[-1])
    return bound if alpha == 0 else bound / (1 - alpha)


def finite_or_zero(values: Tensor) -> Tensor:
    """Replace -inf/inf/nan by 0 (a control variate that cannot be formed is no control variate)."""
    return torch.nan_to_num(values, nan=0.0, posinf=0.0, neginf=0.0)


def normalized_weights(log_weights: Tensor) -> Tensor:
    """``softmax_k l_k``, ``[..., K]``; all-(-inf) rows give zeros instead of NaN."""
    return finite_or_zero(torch.softmax(log_weights, dim=-1))


def effective_sample_size(log_weights: Tensor) -> Tensor:
    """``(sum_k w_k)^2 / sum_k w_k^2 = 1 / sum_k v_k^2`` with ``v = softmax(l)`` (no overflow),
    ``[..., K] -> [...]``; 0 if every weight is 0."""
    return finite_or_zero(normalized_weights(log_weights).square().sum(-1).reciprocal())


def expand_particles(x: Tensor, mc: int, iw: int) -> Tensor:
    """``[bs, *D] -> [bs * mc * iw, *D]``, each data point repeated ``mc * iw`` times in a row."""
    return expand_to_particles(x, mc * iw)


def log_prob(distribution: Distribution, value: Tensor) -> Tensor:
    return distribution.log_prob(value)


def call_model(model: nn.Module, x: Tensor, particles: int, reparam: bool, options: RuntimeOptions,
               sampler: Optional[LatentSampler] = None) -> Tuple[Dict, Tensor]:
    """One forward pass for ``particles`` rows per data point (docs/DESIGN.md, section 1b):
    ``x`` once with ``particles=`` for models that declare ``accepts_particles``, else repeated.
    Returns ``(output, x_rows [bs * particles, *D])``; ``x_rows`` is where p(x|z) is evaluated."""
    if x.dim() == 0:
        raise ValueError("x must have a batch dimension: expected [bs, *D]")
    x_rows = expand_particles(x, 1, particles)  # [rows, *D]
    kwargs = dict(options.model_kwargs(), reparam=reparam)
    if sampler is not None:
        if not getattr(model, "accepts_sampler", False):
            raise ValueError(f"this estimator controls how each latent is drawn, so the model must support "
                             f"forward(x, sampler=...) and declare accepts_sampler = True; "
                             f"{type(model).__name__} does not (see ovis.models.base.TemplateModel)")
        kwargs["sampler"] = sampler
    if getattr(model, "accepts_particles", False):
        output = model(x, particles=particles, **kwargs)
    else:
        output = model(x_rows, **kwargs)
    missing = [key for key in ("px", "z", "qz", "pz") if key not in output]
    if missing:
        raise ValueError(f"the model's output lacks {missing}; a model returns a dict with px, z, qz "
                         f"and pz (see ovis.models.base.TemplateModel)")
    return output, x_rows


def sample_particles(model: nn.Module, x: Tensor, mc: int, iw: int, reparam: bool, options: RuntimeOptions,
                     log_q: Callable[[Distribution, Tensor], Tensor] = log_prob,
                     sampler: Optional[LatentSampler] = None) -> Particles:
    """One forward pass of ``model`` for ``mc * iw`` particles per data point of ``x [bs, *D]``.

    ``log_q(q, z)`` evaluates each latent group's inference density (default ``q.log_prob(z)``;
    STL/DReG pass one that stops the gradient of q's parameters); ``sampler`` (optional) draws
    the latents (``ovis.models.sampling``).
    """
    output, x_rows = call_model(model, x, mc * iw, reparam, options, sampler)
    bs, rows = x.shape[0], x_rows.shape[0]
    z, qz, pz = output["z"], output["qz"], output["pz"]
    if not (len(z) == len(qz) == len(pz)) or len(z) == 0:
        raise ValueError(f"the model's z, qz and pz must be lists of the same length >= 1 (one entry per "
                         f"latent group), got {len(z)}, {len(qz)}, {len(pz)}")
    log_px = reduce_rows(output["px"].log_prob(x_rows), rows, "px")  # [rows]
    log_qz = torch.stack([reduce_rows(log_q(q, zg), rows, f"qz[{g}]") for g, (q, zg) in enumerate(zip(qz, z))], -1)
    log_pz = torch.stack([reduce_rows(p.log_prob(zg), rows, f"pz[{g}]") for g, (p, zg) in enumerate(zip(pz, z))], -1)
    groups = len(z)
    return Particles(log_px.view(bs, mc, iw), log_qz.view(bs, mc, iw, groups),
                     log_pz.view(bs, mc, iw, groups), output)  # [bs, mc, iw], [bs, mc, iw, G] x 2


def particles_from_log_probs(log_p: Tensor, log_q: Tensor, latents: Optional[List[Tensor]] = None) -> Particles:
    """``Particles`` from per-particle ``log p(x, z_k)`` and ``log q(z_k | x)``, both ``[bs, mc, iw]``:
    the joint stands in for log p(x|z) and the prior term is zero (one latent group). ``latents``
    (optional) become ``output["z"]``."""
    if log_p.dim() != 3 or log_p.shape != log_q.shape:
        raise ValueError(f"log_p and log_q must both have shape [bs, mc, iw], got {tuple(log_p.shape)} "
                         f"and {tuple(log_q.shape)}; add the mc axis with .unsqueeze(1) when mc = 1")
    log_qz = log_q.unsqueeze(-1)  # [bs, mc, iw, 1]
    output = {} if latents is None else {"z": list(latents)}
    return Particles(log_p, log_qz, torch.zeros_like(log_qz, requires_grad=False), output)


@torch.no_grad()
def base_diagnostics(particles: Particles, options: RuntimeOptions) -> Dict[str, Tensor]:
    """Per data point ``[bs]``: ``loss/L_k`` (the bound), ``loss/elbo`` (mean over particles of
    log p(x|z) - beta KL), ``loss/nll`` (- mean log p(x|z)), ``loss/kl`` (mean beta KL),
    ``loss/kl_q_p`` (L_k - elbo, an estimate of KL(q(z|x) || p(z|x))) and ``loss/ess``
    (effective sample size of the iw importance weights, averaged over mc)."""
    log_weights = particles.log_weight_values(options)  # [bs, mc, iw]
    bound = iw_bound(log_weights, options.alpha).mean(1)  # [bs]
    elbo = (log_weights if options.alpha == 0 else log_weights / (1 - options.alpha)).mean((1, 2))  # [bs]
    nll = -particles.log_px.mean((1, 2))  # [bs]
    return {
        "loss/L_k": bound,
        "loss/elbo": elbo,
        "loss/nll": nll,
        "loss/kl": -elbo - nll,
        "loss/kl_q_p": bound - elbo,
        "loss/ess": effective_sample_size(log_weights).mean(1),
    }


@torch.no_grad()
def model_diagnostics(output: Dict, bs: int) -> Dict[str, Tensor]:
    """The model's own diagnostics: ``[rows]`` tensors averaged per data point, scalars kept."""
    diagnostics = {}
    for key, value in (output.get("diagnostics") or {}).items():
        value = torch.as_tensor(value).detach()
        value = value if value.is_floating_point() else value.float()
        if value.dim() == 0:
            diagnostics[key] = value
        elif value.shape[0] % bs == 0:
            diagnostics[key] = value.reshape(bs, -1).mean(1)
        else:
            raise ValueError(f"model diagnostic {key!r} has shape {tuple(value.shape)}: expected a scalar "
                             f"or one value per row (a multiple of {bs} data points)")
    return diagnostics


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
