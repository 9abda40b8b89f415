"""Particle bookkeeping shared by every estimator (``GradientEstimator``, ``base.py``): one place
that expands the data, runs the model once, reduces log-densities per particle and computes
log-weights, the bound and the base diagnostics.

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
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..models.sampling import LatentSampler, expand_to_particles

RUNTIME_OPTIONS = ("alpha", "beta", "tau", "freebits")


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
    ``leaves``: the sampled latents as leaves of the pass (group -> ``[rows, ...]``; double-cv and
    rodeo differentiate the bound with respect to them, ``factorised.LeafSample``);
    ``backward_terms``: what ``surrogate`` leaves for the estimator's own backward pass
    (``GradientEstimator.backward``; learned control variates).
    """
    log_px: Tensor
    log_qz: Tensor
    log_pz: Tensor
    output: Dict
    noise: Dict[int, Tensor] = field(default_factory=dict)
    leaves: Dict[int, Tensor] = field(default_factory=dict)
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
