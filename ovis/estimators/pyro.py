"""Optional Pyro adapter (``pip install ovis[pyro]``; the core never imports this module): any
ovis estimator on a Pyro ``model`` / ``guide`` pair with a named batch plate.

``pyro_log_probs`` turns one run of the pair into per-data-point log-densities ``log p(x, z_k)``
and ``log q(z_k | x)``, ``[bs, particles]``: each sample site's ``log_prob`` (scale and mask
applied, as Pyro does) is summed over every dimension except the batch plate's (and the
particles'), then the sites are added up per data point. The batch plate may be vectorised
(``with pyro.plate("data", N)``) or sequential (``for i in pyro.plate("data", N)``: models whose
structure differs per data point); every sample site must be inside it (a global latent couples
the data points, so there is no per-data-point bound). Particles are vectorised with an outer
``pyro.plate`` (as Pyro's ``vectorize_particles``), or drawn one run at a time for models that
cannot broadcast (``vectorize_particles=False``).

``PyroLoss`` is a loss for ``pyro.infer.SVI`` (a callable returning the differentiable loss): ``SVI(model, guide, optim,
loss=PyroLoss("ovis-gamma1", iw=8))``. Its bound is the mean over data points of the per-point
importance weighted bound. Pyro's ``RenyiELBO`` differs at batch > 1: it sums the per-point bounds
of a vectorised plate, and with a sequential plate it sums the log-weights over the batch before
the logsumexp over particles, which trains a different objective.
"""
from typing import Callable, Dict, Optional, Tuple

import pyro
import torch
from pyro import poutine
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import prune_subsample_sites
from torch import Tensor

from .blackbox import StepHistories
from .config import parse_estimator_id

PARTICLE_PLATE = "ovis_particles"


class _SampleWithoutPath(Messenger):
    """Draw every latent with ``fn.sample()`` (no gradient through z): score-function estimators."""

    def _pyro_sample(self, msg):
        if not msg["is_observed"] and msg["value"] is None:
            msg["value"] = msg["fn"].sample()


def guess_max_plate_nesting(model: Callable, guide: Callable, *args, **kwargs) -> int:
    """The number of vectorised plates of the pair (one run of each, blocked from other handlers)."""
    with poutine.block():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    dims = [frame.dim for trace in (guide_trace, model_trace) for site in trace.nodes.values()
            if site["type"] == "sample" for frame in site["cond_indep_stack"] if frame.vectorized]
    return -min(dims) if dims else 0


def _site_batch(site: Dict, batch_plate: str) -> Tuple[Optional[int], Optional[int]]:
    """``(dim, counter)`` of the site's batch plate frame: dim for a vectorised plate, counter for a
    sequential one; a clear error when the site is outside the plate."""
    for frame in site["cond_indep_stack"]:
        if frame.name == batch_plate:
            return frame.dim, (None if frame.vectorized else frame.counter)
    raise ValueError(f"sample site {site['name']!r} is outside the batch plate {batch_plate!r}: a per-data-point "
                     f"bound needs every sample site inside it (a global latent couples the data points; make "
                     f"it a pyro.param, or name the plate that indexes the data points with batch_plate=)")


def _per_point(trace: poutine.Trace, batch_plate: str, particle_dim: Optional[int]) -> Tensor:
    """Sum of the sample sites' log_prob of ``trace`` per particle and data point: ``[P, bs]``."""
    vectorised, sequential = 0.0, {}
    trace.compute_log_prob()
    for site in trace.nodes.values():
        if site["type"] != "sample":
            continue
        dim, counter = _site_batch(site, batch_plate)
        log_prob = site["log_prob"]
        rank = max(log_prob.dim(), -min(d for d in (dim, particle_dim, -1) if d is not None))
        log_prob = log_prob.reshape((1,) * (rank - log_prob.dim()) + tuple(log_prob.shape))
        keep = {d % rank for d in (dim, particle_dim) if d is not None}
        summed_dims = [d for d in range(rank) if d not in keep]
        summed = log_prob.sum(summed_dims, keepdim=True) if summed_dims else log_prob  # (sum([]) sums all)
        particles = summed.shape[particle_dim] if particle_dim is not None else 1
        if dim is not None:  # [P, bs]
            vectorised = vectorised + summed.reshape(particles, -1)
        else:  # [P] for the data point of this counter
            sequential[counter] = sequential.get(counter, 0.0) + summed.reshape(particles)
    if sequential:
        if not isinstance(vectorised, float):
            raise ValueError(f"the batch plate {batch_plate!r} is vectorised at some sites and sequential at others")
        return torch.stack([sequential[c] for c in sorted(sequential)], dim=-1)  # [P, bs]
    return vectorised


def pyro_log_probs(model: Callable, guide: Callable, *args, particles: int = 1, batch_plate: str = "data",
                   reparam: bool = False, vectorize_particles: bool = True, max_plate_nesting: Optional[int] = None,
                   **kwargs) -> Tuple[Tensor, Tensor]:
    """``(log_p, log_q)``, ``[bs, particles]`` each, for ``model(*args, **kwargs)`` / ``guide(...)``.

    ``reparam=True`` keeps Pyro's pathwise draws (every guide site must have ``rsample``);
    otherwise latents are drawn without a gradient path (score-function estimators), and log q
    keeps the graph of the guide's parameters. ``max_plate_nesting``: the pair's own number of
    vectorised plates (guessed by one extra run when None); the particle plate goes left of them.
    """
    if vectorize_particles:
        if max_plate_nesting is None:
            max_plate_nesting = guess_max_plate_nesting(model, guide, *args, **kwargs)
        particle_dim = -(max_plate_nesting + 1)
        plate = pyro.plate(PARTICLE_PLATE, particles, dim=particle_dim)
        model, guide, runs = plate(model), plate(guide), 1
    else:
        particle_dim, runs = None, particles
    if not reparam:  # outermost: it draws after every plate has broadcast the distribution
        guide = _SampleWithoutPath()(guide)
    log_p, log_q = [], []
    for _ in range(runs):
        guide_trace, model_trace = _traces(model, guide, vectorize_particles, *args, **kwargs)
        guide_trace = prune_subsample_sites(guide_trace)
        if reparam:
            _check_reparameterised(guide_trace)
        log_q.append(_per_point(guide_trace, batch_plate, particle_dim))  # [P, bs]
        log_p.append(_per_point(model_trace, batch_plate, particle_dim))
    return torch.cat(log_p).T, torch.cat(log_q).T  # [bs, particles] x 2


def _traces(model: Callable, guide: Callable, vectorised: bool, *args, **kwargs) -> Tuple[poutine.Trace, poutine.Trace]:
    """One run of the guide, then of the model replayed on it. A model or guide whose Python
    control flow reads sampled values (``while z.item() == 0``) cannot run on a tensor of
    particles: its error is turned into one that names the option that runs it."""
    try:
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    except RuntimeError as error:
        if not vectorised:
            raise
        raise ValueError(f"the model or guide failed on vectorised particles ({error}); a model whose Python "
                         f"control flow depends on sampled values (a while loop, a structure that differs per "
                         f"data point) must draw its particles one run at a time: pass "
                         f"vectorize_particles=False (PyroLoss or pyro_log_probs)") from error
    return guide_trace, prune_subsample_sites(model_trace)


def _check_reparameterised(guide_trace: poutine.Trace) -> None:
    for site in guide_trace.nodes.values():
        if site["type"] == "sample" and not site["is_observed"] and not site["fn"].has_rsample:
            raise ValueError(f"guide site {site['name']!r} ({type(site['fn']).__name__}) cannot be reparameterised; "
                             f"use a score-function estimator such as ovis-gamma1, vimco-arithmetic or reinforce")


class PyroLoss(StepHistories):
    """Any ovis estimator as a loss for ``pyro.infer.SVI`` (callable; also ``loss``,
    ``loss_and_grads`` and ``differentiable_loss``, as Pyro's ELBOs): per-data-point importance weighted bounds of a
    model / guide pair with the batch plate ``batch_plate``, averaged over the batch.

    ``loss_history_`` and ``bound_history_`` get one float per ``loss_and_grads`` /
    ``differentiable_loss`` call; ``diagnostics_`` holds the last call's. ``stl``/``dreg`` and
    ``wake-sleep`` are refused (they need q's parameters stopped, gradient hooks on z, or a
    sleep phase, which a Pyro trace does not give).
    """

    def __init__(self, estimator_id: str, iw: int = 8, mc: int = 1, batch_plate: str = "data",
                 vectorize_particles: bool = True, max_plate_nesting: Optional[int] = None, **estimator_options):
        Estimator, config = parse_estimator_id(estimator_id)
        if Estimator.stops_q_parameters or Estimator.needs_latents or Estimator.needs_model:
            raise ValueError(f"{estimator_id} needs more than the log-densities of a Pyro trace (stopped "
                             f"parameters of q, gradient hooks on z or a sleep phase); use pathwise-iwae, "
                             f"a score-function estimator (ovis-gamma1, vimco-arithmetic) or wake-wake")
        self.estimator = Estimator(mc=mc, iw=iw, **config, **estimator_options)
        self.batch_plate, self.vectorize_particles = batch_plate, vectorize_particles
        self.plate_nesting = max_plate_nesting
        self.start_histories()
        self.diagnostics_: Dict[str, Tensor] = {}

    def _loss(self, model, guide, *args, **kwargs) -> Tensor:
        mc, n = self.estimator.layout
        if self.vectorize_particles and self.plate_nesting is None:
            self.plate_nesting = guess_max_plate_nesting(model, guide, *args, **kwargs)
        log_p, log_q = pyro_log_probs(model, guide, *args, particles=mc * n, batch_plate=self.batch_plate,
                                      reparam=self.estimator.reparam, vectorize_particles=self.vectorize_particles,
                                      max_plate_nesting=self.plate_nesting, **kwargs)  # [bs, mc * n]
        bs = log_p.shape[0]
        loss, self.diagnostics_ = self.estimator.loss_from_log_probs(log_p.reshape(bs, mc, n), log_q.reshape(bs, mc, n))
        return loss.mean()

    def differentiable_loss(self, model, guide, *args, **kwargs) -> Tensor:
        loss = self._loss(model, guide, *args, **kwargs)
        self.record_step(loss, self.diagnostics_)
        return loss

    __call__ = differentiable_loss  # what pyro.infer.SVI calls for a loss that is not one of its ELBOs

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward()
        return loss.item()

    @torch.no_grad()
    def loss(self, model, guide, *args, **kwargs) -> float:
        """Minus the batch mean of the per-data-point bound L_K (no gradient)."""
        self._loss(model, guide, *args, **kwargs)
        return -self.diagnostics_["loss/L_k"].mean().item()
