"""Reparameterised (pathwise) estimators: Pathwise, pathwise-vae, pathwise-iwae, stl, dreg.

All sample ``z = g_phi(eps)`` with ``rsample`` and need ``model.supports_reparam``.
"""
from typing import Dict, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from .base import GradientEstimator

from .particles import Particles, RuntimeOptions, iw_bound, normalized_weights
from .distributions import detach_parameters
from .registry import EstimatorFamily, Style


class Pathwise(GradientEstimator):
    """Reparameterised gradient of the importance weighted bound (Burda et al., 2016;
    Kingma & Welling, 2014).

    Surrogate ``J = - mean_m L`` with ``L = (logsumexp_k l_k - log K) / (1 - alpha)``; theta and
    phi both receive the exact gradient of ``L`` for the sampled ``eps``. Unbiased for the
    gradient of ``E[L]`` (the IWAE bound L_K, or the IW-Renyi bound for alpha > 0), for
    generative and inference parameters alike.
    """
    reparam = True
    latent_types = frozenset({"gaussian", "categorical"})  # latents with rsample (categorical: relaxed)
    unbiased_for = "∇ L_K"

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        log_weights = particles.log_weights(options)  # [bs, mc, iw]
        return -iw_bound(log_weights, options.alpha).mean(1), {}  # [bs]


class PathwiseVAE(Pathwise):
    """Pathwise gradient of the ELBO (Kingma & Welling, 2014) with the particle budget spent
    on ``mc * iw`` single-sample bounds: layout ``(mc * iw, 1)``. Unbiased for the gradient of
    the ELBO L_1 (not of L_K)."""
    unbiased_for = "∇ ELBO"

    @property
    def layout(self) -> Tuple[int, int]:
        return self.mc * self.iw, 1


class PathwiseIWAE(Pathwise):
    """Pathwise gradient of the IWAE bound with all ``mc * iw`` particles in one bound
    (Burda et al., 2016): layout ``(1, mc * iw)``. Unbiased for the gradient of L_{mc*iw}."""

    @property
    def layout(self) -> Tuple[int, int]:
        return 1, self.mc * self.iw


class StickingTheLanding(Pathwise):
    """IWAE with the "sticking the landing" gradient (Roeder et al., 2017).

    As ``Pathwise`` but ``log q(z|x)`` is evaluated by a copy of q whose parameters (all of
    them: location and scale, logits or probs, ...) are detached, so phi receives only the
    pathwise term through ``z``; the score term ``d log q_phi(z) / d phi`` (zero in
    expectation for K = 1) is dropped. Theta gradients are those of L_K (unbiased). Phi
    gradients are unbiased for the ELBO when K = 1 and vanish with zero variance when q is the
    exact posterior; for K > 1 they are biased for L_K.

    Requires a single latent group: for a hierarchical q, detaching q(z_2 | z_1)'s parameters
    would also cut the path through z_1.
    """
    unbiased_for = "biased"  # for L_K at K > 1; the ELBO at K = 1
    stops_q_parameters = True

    def log_q(self, q: Distribution, z: Tensor) -> Tensor:
        return detach_parameters(q).log_prob(z)

    def check_model(self, model: nn.Module) -> None:
        """Also counts the model's latent groups on a probe pass (with ``x_shape``)."""
        super().check_model(model)
        output = self.probe(model)
        if output is not None:
            self.check_groups(len(output["z"]))

    def check_particles(self, particles: Particles) -> None:
        self.check_groups(particles.log_qz.shape[-1])

    def check_groups(self, groups: int) -> None:
        if groups != 1:
            raise ValueError(f"{type(self).__name__} supports models with one latent group (with a "
                             f"hierarchical q the stopped gradients would cut the paths between layers); "
                             f"this model has {groups}: use pathwise-iwae, or a model with --depth 1")

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        self.check_particles(particles)
        return super().surrogate(model, x, particles, options)


class DReG(StickingTheLanding):
    """Doubly reparameterised gradient estimator of the IW(R) bound (Tucker et al., 2019).

    With ``v_k = softmax_k(l_k)`` (constant) the surrogate is ``J = - mean_m sum_k v_k l_k / (1 - alpha)``
    with STL's log q; theta receives ``sum_k v_k grad l_k / (1 - alpha)``, the exact gradient of L.
    The score term of phi is replaced by its reparameterised equivalent (``E[f(z) d log q / d phi]
    = E[df/dz dz/dphi]`` applied to ``f = v_k``), so that phi receives

        sum_k v_k h_k (dl_k/dz_k)(dz_k/dphi) / (1 - alpha),   h_k = 1 - beta (1 - alpha) (1 - v_k)

    (``v_k^2`` weights for the IWAE bound, alpha = 0 and beta = 1; the original code used them for
    every alpha and beta). ``h_k`` is applied by a backward hook on every latent tensor (any shape).
    Unbiased for the gradient of the bound, theta and phi. Free bits are not supported (the
    identity needs a smooth l_k).
    """
    unbiased_for = "∇ L_K"
    needs_latents = True

    def check_options(self, options: RuntimeOptions) -> None:
        if options.freebits is not None:
            raise ValueError("dreg does not support free bits (its reweighting assumes a smooth log-weight); "
                             "use freebits=None or the pathwise-iwae / stl estimators")

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        self.check_particles(particles)
        log_weights = particles.log_weights(options)  # [bs, mc, iw]
        weights = normalized_weights(log_weights.detach())  # [bs, mc, iw]
        scale = 1 - options.beta * (1 - options.alpha) * (1 - weights)  # [bs, mc, iw]
        if "z" not in particles.output:
            raise ValueError("dreg rescales the gradient of each latent sample: pass latents=[z] (the rsampled "
                             "tensors, bs * mc * iw rows) to loss_from_log_probs")
        for z in particles.output["z"] if torch.is_grad_enabled() else []:  # no gradient, no hooks: the value
            if not (isinstance(z, Tensor) and z.requires_grad):
                raise ValueError("dreg needs every latent sample to be a tensor drawn with rsample "
                                 "(the model returned one without gradient)")
            row_scale = scale.reshape(-1, *([1] * (z.dim() - 1)))  # [rows, 1, ...]
            z.register_hook(lambda grad, row_scale=row_scale: grad * row_scale)
        surrogate = (weights * log_weights).sum(-1) / (1 - options.alpha)  # [bs, mc]
        return -surrogate.mean(1), {}


FAMILIES = (EstimatorFamily(
    name="pathwise", grammar="pathwise | pathwise-vae | pathwise-iwae | stl | dreg",
    ids={"pathwise": (Pathwise, {}), "Pathwise": (Pathwise, {}), "pathwise-vae": (PathwiseVAE, {}),
         "pathwise-iwae": (PathwiseIWAE, {}), "stl": (StickingTheLanding, {}), "dreg": (DReG, {})},
    examples=("pathwise", "pathwise-vae", "pathwise-iwae", "stl", "dreg"),
    label={"pathwise-vae": "VAE", "pathwise-iwae": "IWAE", "stl": "IWAE-STL", "dreg": "IWAE-DReG"},
    style={"pathwise-iwae": Style("#636363", (4, 0)), "pathwise-vae": Style("#a9a9a9", (4, 1)),
           "pathwise": Style("#4d4d4d", (4, 2)), "stl": Style("#9e9ac8", (4, 3)), "dreg": Style("#54278f", (4, 4))},
    table=(
        (
            "`pathwise-iwae`, `pathwise-vae`, `pathwise`",
            "reparameterised IWAE bound / ELBO",
            "∇ L_K / ∇ ELBO",
        ),
        (
            "`stl`, `dreg`",
            "IWAE sticking-the-landing / doubly reparameterised (Tucker et al. 2019)",
            "STL biased for L_K; DReG ∇ L_K",
        ),
    )),)
