"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein, 2017), dynamic REBAR and RELAX
(Grathwohl, Choi, Wu, Roeder & Duvenaud, 2018) for Bernoulli latents.

``f`` is the bound ``L`` of all particles of a data point (the ELBO at iw = 1), ``u`` the noise of
the hard draw ``b = H(a + logit u)``, ``u~ ~ u | b`` REBAR's conditional noise, ``c(u)`` the
control variate evaluated on the relaxed pass at noise ``u`` (``controlled.py``)::

    g = grad_direct f(b) + [f(b) - eta c(u~)] grad log q(b) + eta grad c(u) - eta grad c(u~)

REBAR: ``c(u) = f(sigmoid((a + logit u) / lam))``, the bound at the Concrete relaxation of every
latent (the model evaluates its log-densities at relaxed values). RELAX: ``c = f(relaxed) +
r_psi(x, relaxed)`` with a neural network r (summed over particles). ``E_u[grad c(u)] = grad E[c]``
(reparameterisation) and ``E[grad c(u~) | b] = grad E[c(u) | b]`` (conditional
reparameterisation): the estimator is unbiased for the gradient of L_K (the ELBO at iw = 1), for
phi, and theta gets the exact ``grad_theta f(b)`` (the relaxed passes run with the generative
parameters detached). Three model evaluations per step. Hierarchical q: every layer is relaxed
in both relaxed passes, ``log q(b)`` sums over layers.

dynamic REBAR and RELAX train ``eta``, ``log lam`` (and psi) online to minimise the variance of
the phi gradient, ``sum_i g_i^2`` of the batch's gradient estimate (its mean does not depend on
them), by double backpropagation (in training mode only); their parameters are ``estimator.parameters()`` (the trainer
gives them their own Adam, ``--baseline_lr``).
"""
import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .base import Particles, RuntimeOptions, iw_bound
from .controlled import (ConditionalRelaxedSampler, ControlledNoiseEstimator, RelaxedSampler, group_logits,
                         group_samples)


class FrozenGenerative:
    """Calls ``model`` with every parameter outside ``inference_network_prefixes`` detached."""

    def __init__(self, model: nn.Module):
        prefixes = tuple(getattr(model, "inference_network_prefixes", ("inference_network.",)))
        self.model = model
        self.accepts_sampler = getattr(model, "accepts_sampler", False)
        self.accepts_particles = getattr(model, "accepts_particles", False)
        self.frozen = {name: p.detach() for name, p in model.named_parameters() if not name.startswith(prefixes)}

    def __call__(self, *args, **kwargs):
        return torch.func.functional_call(self.model, self.frozen, args, kwargs)


def inference_parameters(model: nn.Module) -> List[Tensor]:
    prefixes = tuple(getattr(model, "inference_network_prefixes", ("inference_network.",)))
    return [p for name, p in model.named_parameters() if name.startswith(prefixes) and p.requires_grad]


class REBAR(ControlledNoiseEstimator):
    """REBAR / dynamic REBAR / RELAX (module docstring).

    Args: ``eta`` (control-variate scale, 1), ``temperature`` (lam, 0.5), ``learn`` (train eta
    and log lam: dynamic REBAR), ``surrogate_hdim`` (> 0: RELAX's network r with one tanh hidden
    layer of this width; needs ``x_shape``; implies ``learn``).
    """

    def __init__(self, mc: int = 1, iw: int = 1, eta: float = 1.0, temperature: float = 0.5, learn: bool = False,
                 surrogate_hdim: int = 0, x_shape=None, **options):
        super().__init__(mc, iw, x_shape=x_shape, **options)
        if not temperature > 0:
            raise ValueError(f"temperature={temperature!r}: the relaxation temperature must be > 0")
        if surrogate_hdim and x_shape is None:
            raise ValueError("relax needs x_shape= (the shape of one data point) for its surrogate network")
        self.learn = bool(learn or surrogate_hdim)
        values = {"eta": torch.tensor(float(eta)), "log_temperature": torch.tensor(math.log(temperature))}
        for name, value in values.items():
            if self.learn:
                setattr(self, name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)
        self.surrogate_hdim = int(surrogate_hdim)
        self.network: Optional[nn.Module] = None

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if self.surrogate_hdim and self.network is None:
            reference = next(model.parameters())
            with torch.no_grad():  # the latent sizes, from one pass on a zero data point
                output = model(torch.zeros(1, *self.x_shape, dtype=reference.dtype, device=reference.device))
            features = math.prod(self.x_shape) + sum(z[0].numel() for z in output["z"])
            self.network = nn.Sequential(nn.Linear(features, self.surrogate_hdim), nn.Tanh(),
                                         nn.Linear(self.surrogate_hdim, 1)).to(reference)

    def control(self, model, x: Tensor, sampler, options: RuntimeOptions) -> Tensor:
        """``c`` of every (data point, mc) pair, ``[bs, mc]``, on a relaxed pass."""
        relaxed = self.evaluate(model, x, sampler, options)
        value = iw_bound(relaxed.log_weights(options), options.alpha)  # [bs, mc]
        if self.network is not None:
            bs, mc, K = relaxed.log_px.shape
            latents = torch.cat([z.flatten(1) for z in relaxed.output["z"]], 1)  # [rows, sum N_g]
            data = (2 * x.flatten(1) - 1).repeat_interleave(mc * K, 0)  # [rows, D]
            value = value + self.network(torch.cat([data, latents], 1)).view(bs, mc, K).mean(-1)
        return value

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc], with the log q term
        temperature = self.log_temperature.exp()
        frozen = FrozenGenerative(model)
        relaxed = self.control(frozen, x, RelaxedSampler(temperature, noise=self.noise), options)  # [bs, mc]
        conditional = self.control(frozen, x, ConditionalRelaxedSampler(
            temperature, self.second_noise(self.noise), group_samples(particles), group_logits(particles)),
            options)  # [bs, mc]
        log_q = particles.log_qz.sum((-2, -1))  # [bs, mc]: log q(b) of all particles and layers
        coefficient = bound.detach() - self.eta * conditional  # [bs, mc]
        eta = self.eta.detach()
        phi_loss = -(coefficient.detach() * log_q + eta * (relaxed - conditional))  # [bs, mc]
        loss = (phi_loss - bound).mean(1)  # [bs]
        if self.learn and self.training and torch.is_grad_enabled():
            loss = loss + self.variance_step(model, loss, log_q, coefficient, relaxed - conditional, bound)
        return loss, {"rebar/eta": self.eta.detach(), "rebar/temperature": temperature.detach()}

    def variance_step(self, model, loss: Tensor, log_q: Tensor, coefficient: Tensor, difference: Tensor,
                      bound: Tensor) -> Tensor:
        """A zero-valued term whose gradient for eta, log lam (and psi) is that of ``sum_i g_i^2``,
        ``g`` the batch's phi gradient (double backpropagation), and 0 for the model."""
        phi = inference_parameters(model)
        own = [p for p in self.parameters() if p.requires_grad]
        if not phi or not all(p.requires_grad for p in phi):
            return loss.new_zeros(())
        scale = 1.0 / log_q.numel()  # the batch mean over data points and mc samples
        eta = self.eta.detach()
        # g = score term (coefficient as grad_outputs: constant for phi, live for eta, lam, psi)
        #     + eta (grad c(u) - grad c(u~)) + the direct term, in one backward pass with its graph
        outputs = [log_q, -(self.eta * difference).sum() * scale, -bound.sum() * scale]
        grad_outputs = [-coefficient * scale, torch.ones_like(outputs[1]), torch.ones_like(outputs[2])]
        gradient = torch.autograd.grad(outputs, phi, grad_outputs, retain_graph=True, create_graph=True,
                                       allow_unused=True)
        variance = sum((g ** 2).sum() for g in gradient if g is not None)
        if not isinstance(variance, Tensor) or not variance.requires_grad:
            return loss.new_zeros(())  # the model's parameters are not in the graph (per-datum copies)
        wanted = torch.autograd.grad(variance, own, retain_graph=True, allow_unused=True)
        # what the loss itself gives them: only through -eta (c(u) - c(u~)) (eta is detached there)
        present = torch.autograd.grad(-(eta * difference).sum() * scale, own, retain_graph=True, allow_unused=True)
        correction = sum((((w if w is not None else 0) - (g if g is not None else 0)) * p).sum()
                         for p, w, g in zip(own, wanted, present))
        return correction - correction.detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, learn={self.learn}, surrogate_hdim={self.surrogate_hdim}"
