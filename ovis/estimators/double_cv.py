"""Double control variates (Titsias & Shi, "Double control variates for gradient estimation in
discrete latent variable models", AISTATS 2022).

The ``mc`` outer samples of a data point are independent; ``f_m`` is the bound of sample m (the
ELBO at iw = 1) as a function of its latents ``z_m`` (all iw particles, one layer of Bernoulli or
one-hot categorical units), ``mu = E_q[z]``, ``s_m = grad_z f_m`` at the sampled latents (from
the same pass: the latents are leaves of the graph). With ``s_-m`` the mean of the other
samples' slopes, the global linear control variate ``h_m = a s_-m . (z_m - mu)`` (a first-order
Taylor expansion of ``f_m`` around ``mu``) and the leave-one-out mean ``b_-m`` of ``f_m' - h_m'``
over ``m' != m`` (estimates of ``f(mu)``)::

    c_m = b_-m + h_m                  control variate of sample m (template of score_function.py)
    A   = a sum_m s_bar . mu          analytic expectation of the h_m term (s_bar: mean of all slopes)

``b_-m`` does not depend on ``z_m`` in expectation against the score (the other samples are
independent and ``z_m'`` is centred), and ``E[h_m grad log q(z_m)] = a s_-m . grad mu``, which
``A`` gives back: unbiased for the gradient of L_K (the ELBO at iw = 1), theta and phi. ``a``
(``scale``) is the coefficient of the linear control variate; the paper learns it, here it is
fixed (1: the Taylor coefficient; the paper's code writes the coefficient with the opposite sign). One model evaluation per particle and one
backward pass of the bounds to the latents.
"""
from typing import Optional

import torch
from torch import Tensor, nn

from .base import Particles, RuntimeOptions, iw_bound, sample_particles
from .factorised import DiscreteLatentEstimator, LeafSample, latent_groups
from .registry import EstimatorFamily, Style
from .score_function import ScoreFunctionEstimator


class DoubleControlVariate(DiscreteLatentEstimator, ScoreFunctionEstimator):
    """Double control variates (module docstring); needs ``mc >= 2`` independent samples and a
    model that accepts samplers, one layer of Bernoulli or categorical latents."""
    name = "double-cv"
    max_groups = 1
    min_mc = 2
    compile_problem = ("its control variate's slopes are gradients taken inside the training call "
                       "(torch.autograd.grad), which torch.compile traces to gradients that differ from the eager ones")

    def __init__(self, mc: int = 2, iw: int = 1, scale: float = 1.0, **options):
        super().__init__(mc, iw, **options)
        self.scale = float(scale)
        self.leaves = {}

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if not getattr(model, "accepts_sampler", False):
            self.check_sampler(model, LeafSample(), "differentiates the bound with respect to the sampled latents")

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        return log_weights.new_zeros(())  # all of it is in group_terms

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        sampler = LeafSample()
        particles = sample_particles(model, x, self.mc, self.iw, False, options, self.log_q, sampler=sampler)
        self.leaves = sampler.values
        if self.groups is None:
            self.check_groups(latent_groups(particles.output))
        return particles

    def slopes(self, bound: Tensor) -> Tensor:
        """``grad_z f_m`` at the sampled latents, ``[rows, ...]`` (zeros without a graph)."""
        leaf = self.leaves[0]
        if not (torch.is_grad_enabled() and bound.requires_grad):
            return torch.zeros_like(leaf)
        return torch.autograd.grad(bound.sum(), [leaf], retain_graph=True, allow_unused=True)[0] \
            if leaf.requires_grad else torch.zeros_like(leaf)

    def group_terms(self, model: Optional[nn.Module], x: Tensor, particles: Particles, control_variate: Tensor,
                    options: RuntimeOptions):
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc]: f_m with its graph to z
        bs, mc = bound.shape
        slopes = self.slopes(bound).detach().reshape(bs, mc, -1)  # [bs, mc, K * U]
        mean = particles.output["qz"][0].mean  # [rows, ...] with the graph of phi
        centred = (self.leaves[0].detach() - mean.detach()).reshape(bs, mc, -1)  # [bs, mc, K * U]
        others = (slopes.sum(1, keepdim=True) - slopes) / (mc - 1)  # s_-m  [bs, mc, K * U]
        linear = self.scale * (others * centred).sum(-1)  # h_m  [bs, mc]
        adjusted = bound.detach() - linear  # f(mu) + O(|z - mu|^2) for each sample  [bs, mc]
        leave_one_out = (adjusted.sum(1, keepdim=True) - adjusted) / (mc - 1)  # b_-m  [bs, mc]
        analytic = self.scale * (slopes.mean(1, keepdim=True) * mean.reshape(bs, mc, -1)).sum(-1)  # A  [bs, mc]
        return (leave_one_out + linear)[..., None, None], analytic  # [bs, mc, 1, 1], [bs, mc]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, scale={self.scale}"


FAMILIES = (EstimatorFamily(name="double-cv", grammar="double-cv", ids={"double-cv": (DoubleControlVariate, {})},
                            examples=("double-cv",), label="double CV", style=Style("#fd8d3c", (10, 1))),)
