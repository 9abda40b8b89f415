"""Reweighted wake-sleep (Bornschein & Bengio, 2015; Le, Kosiorek, Siddharth, Teh & Wood, 2019,
"Revisiting reweighted wake-sleep")."""
from abc import abstractmethod
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from .base import GradientEstimator

from .particles import Particles, RuntimeOptions, iw_bound, normalized_weights, reduce_rows
from .registry import EstimatorFamily, Style


class ReweightedWakeSleep(GradientEstimator):
    """Common wake phase for theta: latents sampled without gradient, ``J_theta = - L`` with log q
    detached, the exact gradient of L_K with respect to theta (unbiased). Subclasses define the
    phi objective ``phi_loss``."""

    @abstractmethod
    def phi_loss(self, model: nn.Module, x: Tensor, particles: Particles, log_weights: Tensor,
                 options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        """Per-data-point phi objective ``[bs]`` and diagnostics; ``log_weights [bs, mc, iw]``."""

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        log_weights = particles.log_weights(options, detach_q=True)  # [bs, mc, iw]
        bound = iw_bound(log_weights, options.alpha)  # [bs, mc], gradient for theta only
        phi_loss, diagnostics = self.phi_loss(model, x, particles, log_weights.detach(), options)
        return phi_loss - bound.mean(1), diagnostics


class WakeWake(ReweightedWakeSleep):
    """RWS with the wake-phase update of q: ``J_phi = - sum_k sg(v_k) sum_g log q(z_kg | x)``, the
    self-normalised importance sampling estimate of ``grad_phi E_{p(z|x)}[log q(z|x)]``
    (= - grad_phi KL(p(z|x) || q(z|x))). Theta: unbiased for L_K. Phi: biased for any finite K
    (consistent as K grows; zero in expectation at K = 1), and it does not target L_K."""
    unbiased_for = "biased"

    def phi_loss(self, model, x, particles, log_weights, options):
        weights = normalized_weights(log_weights)  # [bs, mc, iw]
        return -(weights * particles.log_qz.sum(-1)).sum(-1).mean(1), {}


class WakeSleep(ReweightedWakeSleep):
    """RWS with the sleep-phase update of q: draw ``(z, x) ~ p_theta(z) p_theta(x|z)`` without
    gradient, ``J_phi = - log q_phi(z | x)``. Unbiased for the gradient of
    ``E_{p(x, z)}[log q(z|x)]`` (= - E_{p(x)} KL(p(z|x) || q(z|x)) + const), not of L_K; theta:
    unbiased for L_K.

    Needs a second pass: ``bs * mc * iw`` prior samples (the same budget as the wake phase; the
    original drew only bs) and ``model.infer(x, z=z)``, which returns the inference distributions
    ``[q(z_g | ...)]`` evaluated at the given latents (top first, as in ``forward``).
    Diagnostics: ``rws/sleep_log_q``, the mean of ``log q(z|x)`` over the sleep samples.
    """
    unbiased_for = "sleep"  # phi: the sleep objective E_p(x,z)[log q(z|x)]; theta: L_K
    sleep_phase = True
    needs_model = True

    def model_evaluations(self, latent_size=None) -> int:
        """The wake pass and as many prior samples for the sleep phase."""
        return 2 * self.mc * self.iw

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if not callable(getattr(model, "infer", None)):
            raise ValueError("wake-sleep needs the model to implement infer(x, z=None, **kwargs) -> "
                             "[q(z_g | ...)] (the inference distributions at given latents) for its sleep phase")

    def phi_loss(self, model, x, particles, log_weights, options):
        bs = x.shape[0]
        rows = bs * self.mc * self.iw
        with torch.no_grad():
            prior = model.sample_from_prior(rows, **options.model_kwargs())
            x_sleep = prior["px"].sample()  # [rows, *D]
            z_sleep = [z.detach() for z in prior["z"]]
        qz = model.infer(x_sleep, z=z_sleep, **options.model_kwargs())
        log_q = sum(reduce_rows(q.log_prob(z), rows, f"infer(...)[{g}]")
                    for g, (q, z) in enumerate(zip(qz, z_sleep)))  # [rows]
        sleep_log_q = log_q.view(bs, -1).mean(1)  # [bs]
        return -sleep_log_q, {"rws/sleep_log_q": sleep_log_q.detach()}


FAMILIES = (EstimatorFamily(
    name="wake-sleep", grammar="wake-wake | wake-sleep",
    ids={"wake-wake": (WakeWake, {}), "wake-sleep": (WakeSleep, {})}, examples=("wake-wake", "wake-sleep"),
    label={"wake-wake": "RWS (wake-wake)", "wake-sleep": "RWS (wake-sleep)"},
    style={"wake-wake": Style("#6baed6", (3, 0)), "wake-sleep": Style("#9ecae1", (3, 1))},
    table=(
        (
            "`wake-wake`, `wake-sleep`",
            "reweighted wake-sleep (Bornschein & Bengio 2015; Le et al. 2019)",
            "θ: ∇ L_K; φ: the RWS objectives",
        ),
    )),)
