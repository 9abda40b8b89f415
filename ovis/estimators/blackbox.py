"""Black-box front end: any estimator on an inference network and a generative model given as two
objects, in the style of the model-agnostic VAE tools (TuragaLab ``vae``).

    inf_net(x) -> inf_net          forward pass for ``x [rows, ...]``, sets the state of q(z|x)
    inf_net.sample() -> z          z ~ q(z|x), one latent per row (``rsample()`` too for pathwise)
    inf_net.log_prob(z)            log q(z|x): ``[rows]`` (or ``[rows, ...]``, summed per row)
    gen_model(x, z) -> gen_model   forward pass, sets the state of p(x, z)
    gen_model.log_prob(x, z)       log p(x, z): ``[rows]`` (or ``[rows, ...]``, summed per row)
    gen_model.sample() -> (x, z)   (x, z) ~ p(x, z) (the sleep phase of wake-sleep only)

``z`` may be anything the two objects agree on (a tensor, a list of tensors, a list of per-row
traces of different lengths): the loss only passes it along. ``Loss`` repeats each data point
``mc * iw`` times (data point slowest, as ``expand_particles``), calls the objects once for
all rows, views the log-densities as ``[bs, mc, iw]`` and hands them to the estimator's
``loss_from_log_probs`` (docs/DESIGN.md, section 1b): the same surrogate as the
``TemplateModel`` path, the logsumexp over particles per data point, the batch mean after it.
"""
from typing import Any, Dict, List

import torch
from torch import Tensor, nn

from .particles import expand_particles, reduce_rows
from .config import parse_estimator_id
from .wake_sleep import WakeWake


def detach_latents(z: Any) -> Any:
    """``z`` with every tensor detached (tensors, lists, tuples and dicts of them; others kept)."""
    if isinstance(z, Tensor):
        return z.detach()
    if isinstance(z, (list, tuple)):
        return type(z)(detach_latents(v) for v in z)
    if isinstance(z, dict):
        return {k: detach_latents(v) for k, v in z.items()}
    return z


def _per_row(log_prob: Any, rows: int, what: str) -> Tensor:
    if not isinstance(log_prob, Tensor):
        raise ValueError(f"{what} returned {type(log_prob).__name__}; expected a tensor with one value per row")
    return reduce_rows(log_prob, rows, what)


class ScalarHistory:
    """One scalar per training step, recorded without a host synchronisation (``append`` keeps the
    detached tensor, and every ``CHUNK`` of them are stacked into one tensor on their device:
    about 620 bytes per kept 0-dim tensor, 4 per stacked value) and read as a list of floats
    (``values()``: one synchronisation per read for everything recorded since the last one)."""
    CHUNK = 256

    def __init__(self):
        self._floats: List[float] = []
        self._chunks: List[Tensor] = []
        self._pending: List[Tensor] = []

    def append(self, value: Tensor) -> None:
        self._pending.append(value.detach())
        if len(self._pending) == self.CHUNK:
            self._chunks.append(torch.stack(self._pending))  # [CHUNK], on the device
            self._pending = []

    def values(self) -> List[float]:
        if self._pending:
            self._chunks.append(torch.stack(self._pending))
            self._pending = []
        if self._chunks:
            self._floats.extend(torch.cat(self._chunks).tolist())
            self._chunks = []
        return self._floats


class StepHistories:
    """Mixin of the black-box front ends: ``loss_history_`` (one float per call) and
    ``bound_history_`` (the batch mean of L_K per call), recorded by ``record_step`` without a
    host synchronisation per step. Subclasses call ``start_histories()`` in their constructor."""

    def start_histories(self) -> None:
        self.histories = {"loss": ScalarHistory(), "bound": ScalarHistory()}

    def record_step(self, loss: Tensor, diagnostics: Dict[str, Tensor]) -> None:
        self.histories["loss"].append(loss)
        self.histories["bound"].append(diagnostics["loss/L_k"].mean())

    @property
    def loss_history_(self) -> List[float]:
        return self.histories["loss"].values()

    @property
    def bound_history_(self) -> List[float]:
        return self.histories["bound"].values()


class Loss(StepHistories, nn.Module):
    """``Loss(estimator_id, inf_net, gen_model, iw=16, mc=1)``: ``loss_fn(x)`` is the scalar
    surrogate of the estimator (any id of ``ovis.estimators.config``), ready for ``backward()``;
    its gradient estimates that of the batch mean of ``-L_K`` (or of the estimator's own
    objective: RWS, TVO), with the particle logsumexp per data point.

    Attributes: ``loss_history_`` (one float per call), ``bound_history_`` (batch mean of L_K per
    call), ``diagnostics_`` (the last call's, per data point), ``log_p_`` / ``log_q_`` (detached
    ``[bs, mc, iw]`` per call, when ``store_log_probs=True``), ``params_`` (the objects' current
    distribution parameters). ``inf_net`` and ``gen_model`` are submodules when they are
    ``nn.Module``, so ``loss_fn.parameters()`` also holds the estimator's own (a neural baseline).

    Pathwise estimators draw with ``inf_net.rsample()`` (a clear error without it). ``stl`` and
    ``dreg`` evaluate log q with q's parameters stopped: ``inf_net`` must then be an ``nn.Module``
    (it is called again with detached parameters, ``torch.func.functional_call``), and dreg needs
    z to be one tensor ``[rows, ...]`` (it rescales its gradient). ``wake-sleep`` trains p by the wake phase and q by
    the sleep phase (``WakeSleepSteps.sleep_loss``, dreams from ``gen_model.sample()``).

    Args: ``estimator_id``; ``iw``, ``mc``: particles; ``store_log_probs``; ``estimator_options``:
    passed to the estimator (``x_shape`` for ``reinforce-baseline``, ``alpha``, ...).

    The protocol of the two objects, for ``x [bs, ...]`` and ``rows = bs * mc * n`` (``(bs, mc, n)
    = loss_fn.estimator.particle_shape(bs)``; ``n`` is ``iw``, plus S for exclusive OVIS-MC):

    * particles: each data point is repeated ``mc * n`` times, data point slowest
      (``x_rows = x.repeat_interleave(mc * n, 0)``); each object is called once for all rows, and
      the log-densities are viewed as ``[bs, mc, n]``: row ``(b * mc + m) * n + k`` is particle
      ``k`` of bound ``m`` of data point ``b``;
    * ``inf_net(x_rows)`` returns an object holding q(z|x) for the rows (usually ``inf_net``
      itself); its ``sample()`` returns ``z``, one latent per row; its ``log_prob(z)`` returns
      log q(z|x), a tensor ``[rows]`` (or ``[rows, ...]``, summed per row);
    * ``gen_model(x_rows, z)`` returns an object whose ``log_prob(x_rows, z)`` returns log p(x, z),
      ``[rows]`` (or ``[rows, ...]``, summed per row);
    * ``z`` is anything the two objects agree on (a tensor, a list of tensors, per-row traces of
      different lengths); score-function estimators pass it detached;
    * optional: ``inf_net.rsample()`` (pathwise estimators: ``pathwise*``, ``stl``, ``dreg``),
      ``gen_model.sample() -> (x, z)`` (``wake-sleep``'s sleep phase only), ``params_`` on
      either object (read by ``loss_fn.params_``).
    """

    def __init__(self, estimator_id: str, inf_net: Any, gen_model: Any, iw: int = 16, mc: int = 1,
                 store_log_probs: bool = False, **estimator_options):
        super().__init__()
        Estimator, config = parse_estimator_id(estimator_id)
        self.stops_q = Estimator.stops_q_parameters  # stl, dreg
        if self.stops_q and not isinstance(inf_net, nn.Module):
            raise ValueError(f"{estimator_id} evaluates log q with q's parameters stopped, which ovis does by calling "
                             f"inf_net with detached parameters (torch.func.functional_call): inf_net must be an "
                             f"nn.Module; otherwise use pathwise or pathwise-iwae")
        self.estimator_id = estimator_id
        self.sleep_phase = Estimator.sleep_phase
        if self.sleep_phase:  # p by the wake phase, q by the sleep phase (below)
            Estimator, config = WakeWake, {}
        Estimator.check_log_densities_suffice(estimator_id)
        self.estimator = Estimator(mc=mc, iw=iw, **config, **estimator_options)
        if self.estimator.reparam and not callable(getattr(inf_net, "rsample", None)):
            raise ValueError(f"{estimator_id} needs reparameterised samples, but {type(inf_net).__name__} has no "
                             f"rsample() method; add one (z = g_phi(eps)) or use a score-function estimator "
                             f"such as ovis-gamma1, vimco-arithmetic or reinforce")
        self.inf_net, self.gen_model = inf_net, gen_model
        self.store_log_probs = bool(store_log_probs)
        self.start_histories()
        self.log_p_: List[Tensor] = []
        self.log_q_: List[Tensor] = []
        self.diagnostics_: Dict[str, Tensor] = {}

    @property
    def params_(self) -> Dict[str, Any]:
        """The current distribution parameters: ``{"inf_net": inf_net.params_, "gen_model": ...}``
        (None for an object without ``params_``)."""
        return {"inf_net": getattr(self.inf_net, "params_", None),
                "gen_model": getattr(self.gen_model, "params_", None)}

    def log_probs(self, x: Tensor) -> Dict[str, Tensor]:
        """Draw the particles of ``x [bs, ...]`` and return ``log_p``, ``log_q [bs, mc, n]``
        (``(mc, n)``: the estimator's layout), with the graph each estimator needs."""
        if not isinstance(x, Tensor) or x.dim() == 0:
            raise ValueError("x must be a tensor with a batch dimension: expected [bs, ...]")
        mc, n = self.estimator.layout
        bs, rows = x.shape[0], x.shape[0] * mc * n
        x_rows = expand_particles(x, mc, n)  # [rows, ...]
        inf_net = self.inf_net(x_rows)
        z = inf_net.rsample() if self.estimator.reparam else detach_latents(inf_net.sample())
        if self.stops_q:  # q's parameters stopped, the path through z kept
            stopped = {name: p.detach() for name, p in self.inf_net.named_parameters()}
            inf_net = torch.func.functional_call(self.inf_net, stopped, (x_rows,))
        log_q = _per_row(inf_net.log_prob(z), rows, "inf_net.log_prob(z)")  # [rows]
        gen_model = self.gen_model(x_rows, z)
        log_p = _per_row(gen_model.log_prob(x_rows, z), rows, "gen_model.log_prob(x, z)")  # [rows]
        return {"log_p": log_p.view(bs, mc, n), "log_q": log_q.view(bs, mc, n), "z": z}

    def forward(self, x: Tensor, **runtime) -> Tensor:
        """The scalar loss for the batch ``x [bs, ...]``; ``runtime``: alpha (beta = 1, no free bits)."""
        particles = self.log_probs(x)
        log_p, log_q = particles["log_p"], particles["log_q"]  # [bs, mc, n]
        if self.sleep_phase:  # wake-wake with q detached: the theta wake gradient only
            log_q = log_q.detach()
        latents = [particles["z"]] if self.estimator.needs_latents else None  # dreg rescales their gradients
        loss, diagnostics = self.estimator.loss_from_log_probs(log_p, log_q, x=x, latents=latents, **runtime)  # [bs]
        loss = loss.mean()
        if self.sleep_phase:
            loss = loss + WakeSleepSteps.sleep_loss(self.inf_net, self.gen_model)
        self.diagnostics_ = diagnostics
        self.record_step(loss, diagnostics)
        if self.store_log_probs:
            self.log_p_.append(log_p.detach())
            self.log_q_.append(log_q.detach())
        return loss

    def extra_repr(self) -> str:
        return f"estimator_id={self.estimator_id!r}"


class WakeSleepSteps:
    """The update sequences of reweighted wake-sleep (Bornschein & Bengio, 2015; Le et al., 2019)
    on black-box objects, each with its own optimiser:

    * ``theta_wake(x)``: p's parameters by the gradient of L_K (log q fixed): unbiased;
    * ``phi_wake(x)``: q's by ``sum_k sg(v_k) grad log q(z_k | x)``, the self-normalised estimate
      of ``-grad KL(p(z|x) || q(z|x))`` (biased, consistent in K);
    * ``phi_sleep()``: q's by ``grad mean_n log q(z_n | x_n)`` on dreams ``(x_n, z_n)`` from
      ``gen_model.sample()``: unbiased for ``-grad E_{p(x)} KL(p(z|x) || q(z|x))``.

    ``theta_optimizer`` must hold p's parameters, ``phi_optimizer`` q's. Each step zeroes its
    optimiser's gradients, steps it and returns the loss (a float); ``history_`` maps each step
    name to its losses.
    """

    def __init__(self, inf_net: Any, gen_model: Any, theta_optimizer: torch.optim.Optimizer,
                 phi_optimizer: torch.optim.Optimizer, iw: int = 16, mc: int = 1):
        self.inf_net, self.gen_model = inf_net, gen_model
        self.theta_optimizer, self.phi_optimizer = theta_optimizer, phi_optimizer
        self.wake = Loss("wake-wake", inf_net, gen_model, iw=iw, mc=mc)
        self.history_: Dict[str, List[float]] = {"theta_wake": [], "phi_wake": [], "phi_sleep": []}

    @staticmethod
    def sleep_loss(inf_net: Any, gen_model: Any) -> Tensor:
        """``- mean_n log q(z_n | x_n)`` over the dreams of ``gen_model.sample()`` (no gradient to p)."""
        with torch.no_grad():
            x_dream, z_dream = gen_model.sample()
        z_dream = detach_latents(z_dream)
        rows = x_dream.shape[0]
        return -_per_row(inf_net(x_dream).log_prob(z_dream), rows, "inf_net.log_prob(z)").mean()

    def _step(self, name: str, optimizer: torch.optim.Optimizer, loss: Tensor) -> float:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        value = loss.item()
        self.history_[name].append(value)
        return value

    def _wake_loss(self, x: Tensor, detach: str) -> Tensor:
        particles = self.wake.log_probs(x)
        log_p, log_q = particles["log_p"], particles["log_q"]  # [bs, mc, iw]
        log_p = log_p.detach() if detach == "p" else log_p
        log_q = log_q.detach() if detach == "q" else log_q
        return self.wake.estimator.loss_from_log_probs(log_p, log_q, x=x, return_diagnostics=False)[0].mean()

    def theta_wake(self, x: Tensor) -> float:
        return self._step("theta_wake", self.theta_optimizer, self._wake_loss(x, detach="q"))

    def phi_wake(self, x: Tensor) -> float:
        return self._step("phi_wake", self.phi_optimizer, self._wake_loss(x, detach="p"))

    def phi_sleep(self) -> float:
        return self._step("phi_sleep", self.phi_optimizer, self.sleep_loss(self.inf_net, self.gen_model))
