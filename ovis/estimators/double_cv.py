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
``A`` gives back: unbiased for the gradient of L_K (the ELBO at iw = 1), theta and phi, for any
``a`` fixed before the step. ``a`` (``scale``) is the coefficient of the linear control variate.
``double-cv`` fixes it at 1 (the Taylor coefficient; the paper's code writes the coefficient with
the opposite sign). ``double-cv-learned`` learns it as the authors' code does: a parameter that
starts at 0 and takes a gradient step after each estimate (the trainer's Adam on the estimator's
parameters, ``--baseline_lr``) on the mean over data points i and logits n of ``G_in^2``, ``G_in``
the estimate of the gradient with respect to an offset on logit n of data point i (in all its
particles). ``G = G0 + a G1`` is linear in ``a``: ``G0`` the leave-one-out term, ``G1`` the
terms of the linear control variate; the step's ``2 mean(G G1)`` reaches ``a`` through a
zero-valued term of the loss. G leaves out the loss's zero-mean term through log q, which does
not depend on ``a`` (the authors' code has no such term): the objective's minimiser is the same.
One model evaluation per particle and one backward pass of the bounds to the latents.
"""
from typing import Optional

import torch
from torch import Tensor, nn

from .particles import Particles, RuntimeOptions, iw_bound, sample_particles
from .factorised import DiscreteLatentEstimator, LeafSample, latent_groups
from .registry import EstimatorFamily, Style
from .score_function import ScoreFunctionEstimator


def leave_one_out(values: Tensor) -> Tensor:
    """Mean over the other samples (dim 1) of ``values [bs, mc, ...]``."""
    return (values.sum(1, keepdim=True) - values) / (values.shape[1] - 1)


def mean_jacobian(mean: Tensor, slopes: Tensor, categorical: bool) -> Tensor:
    """``d (slopes . E_q[z]) / d logits`` of each row: ``mean`` and ``slopes`` ``[..., N]`` for
    Bernoulli units (``mu (1 - mu) s``) or ``[..., N, C]`` for categorical ones (``mu (s - mu . s)``)."""
    if categorical:
        return mean * (slopes - (mean * slopes).sum(-1, keepdim=True))
    return mean * (1 - mean) * slopes


def variance_step(per_logit: Tensor, coefficients: Tensor, iw: int) -> Tensor:
    """``[bs]``, zero-valued: its gradient with respect to the learned ``coefficients [P]`` is that
    of ``mean_n G_n^2`` of each data point, ``G = G_0 + sum_j c_j G_j`` the estimate for an offset
    on the logits of unit n (in all iw particles); ``per_logit [1 + P, bs, iw * N]``: ``G_0``,
    ``G_j`` for each logit of a particle, without gradient."""
    per_offset = per_logit.reshape(*per_logit.shape[:2], iw, -1).sum(2)  # [1 + P, bs, N]
    values = coefficients.detach()
    estimate = per_offset[0] + (values[:, None, None] * per_offset[1:]).sum(0)  # G  [bs, N]
    gradients = 2 * (estimate * per_offset[1:]).mean(-1)  # d mean_n G_n^2 / d c_j  [P, bs]
    return (gradients * (coefficients - values)[:, None]).sum(0)


class DoubleControlVariate(DiscreteLatentEstimator, ScoreFunctionEstimator):
    """Double control variates (module docstring); needs ``mc >= 2`` independent samples and a
    model that accepts samplers, one layer of Bernoulli or categorical latents; with ``learn``,
    ``scale`` is the starting value of the learned coefficient."""
    name = "double-cv"
    max_groups = 1
    min_mc = 2
    compile_problem = ("its control variate's slopes are gradients taken inside the training call "
                       "(torch.autograd.grad), which torch.compile traces to gradients that differ from the eager ones")

    def __init__(self, mc: int = 2, iw: int = 1, scale: float = 1.0, learn: bool = False, **options):
        super().__init__(mc, iw, **options)
        self.learn = self.owns_parameters = bool(learn)
        self.scale = nn.Parameter(torch.tensor(float(scale))) if self.learn else float(scale)

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if not getattr(model, "accepts_sampler", False):
            self.check_sampler(model, LeafSample(), "differentiates the bound with respect to the sampled latents")

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        return log_weights.new_zeros(())  # all of it is in group_terms

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        sampler = LeafSample()
        particles = sample_particles(model, x, self.mc, self.iw, False, options, self.log_q, sampler=sampler)
        particles.leaves = sampler.values
        if self.groups is None:
            self.check_groups(latent_groups(particles.output))
        return particles

    @staticmethod
    def slopes(bound: Tensor, particles: Particles) -> Tensor:
        """``grad_z f_m`` at the sampled latents (``particles.leaves``), ``[rows, ...]`` (zeros without a graph)."""
        leaf = particles.leaves[0]
        if not (torch.is_grad_enabled() and bound.requires_grad):
            return torch.zeros_like(leaf)
        return torch.autograd.grad(bound.sum(), [leaf], retain_graph=True, allow_unused=True)[0] \
            if leaf.requires_grad else torch.zeros_like(leaf)

    def group_terms(self, model: Optional[nn.Module], x: Tensor, particles: Particles, control_variate: Tensor,
                    options: RuntimeOptions):
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc]: f_m with its graph to z
        bs, mc = bound.shape
        slopes = self.slopes(bound, particles).detach().reshape(bs, mc, -1)  # [bs, mc, K * U]
        mean = particles.output["qz"][0].mean  # [rows, ...] with the graph of phi
        centred = (particles.leaves[0].detach() - mean.detach()).reshape(bs, mc, -1)  # [bs, mc, K * U]
        scale = self.scale.detach() if self.learn else self.scale
        others = (slopes.sum(1, keepdim=True) - slopes) / (mc - 1)  # s_-m  [bs, mc, K * U]
        linear = scale * (others * centred).sum(-1)  # h_m  [bs, mc]
        adjusted = bound.detach() - linear  # f(mu) + O(|z - mu|^2) for each sample  [bs, mc]
        baseline = (adjusted.sum(1, keepdim=True) - adjusted) / (mc - 1)  # b_-m  [bs, mc]
        analytic = scale * (slopes.mean(1, keepdim=True) * mean.reshape(bs, mc, -1)).sum(-1)  # A  [bs, mc]
        if self.learn and self.training and torch.is_grad_enabled():
            linear_part = (others * centred).sum(-1)  # h_m / a  [bs, mc]
            learning = self.coefficient_learning(bound.detach(), linear_part, centred, slopes, mean.detach())
            analytic = analytic - self.signal_scale() * learning[:, None]  # the loss gains + learning  [bs, mc]
        return (baseline + linear)[..., None, None], analytic  # [bs, mc, 1, 1], [bs, mc]

    def coefficient_learning(self, bound: Tensor, linear_part: Tensor, centred: Tensor, slopes: Tensor,
                             mean: Tensor) -> Tensor:
        """``variance_step`` for ``scale`` (module docstring); ``bound``, ``linear_part [bs, mc]``, ``centred``,
        ``slopes [bs, mc, K * U]`` and ``mean [rows, ...]`` without gradient."""
        bs, mc = bound.shape
        group = self.groups[0]
        categorical = group.kind == "categorical"
        unit = (self.iw, -1, group.categories) if categorical else (self.iw, -1)  # a row's logits
        jacobian = mean_jacobian(mean.reshape(bs, mc, *unit), slopes.mean(1).reshape(bs, 1, *unit), categorical)
        fixed = ((bound - leave_one_out(bound))[..., None] * centred).mean(1)  # G0 per logit  [bs, K * U]
        part = ((leave_one_out(linear_part) - linear_part)[..., None] * centred).mean(1) \
            + jacobian.mean(1).reshape(bs, -1)  # G1 per logit  [bs, K * U]
        return variance_step(torch.stack([fixed, part]), self.scale[None], self.iw)

    def extra_repr(self) -> str:
        scale = float(self.scale.detach() if self.learn else self.scale)
        return f"{super().extra_repr()}, scale={scale:g}, learn={self.learn}"


FAMILIES = (EstimatorFamily(name="double-cv", grammar="double-cv | double-cv-learned",
                            ids={"double-cv": (DoubleControlVariate, {}),
                                 "double-cv-learned": (DoubleControlVariate, {"learn": True, "scale": 0.0})},
                            examples=("double-cv", "double-cv-learned"),
                            label={"double-cv": "double CV", "double-cv-learned": "double CV, learned a"},
                            style={"double-cv": Style("#fd8d3c", (10, 1)),
                                   "double-cv-learned": Style("#fd8d3c", (10, 1, 1), shade=0.4, linestyle="--")},
    table=(
        (
            "`double-cv`, `double-cv-learned`",
            ("leave-one-out plus a linear global control variate (Titsias & Shi 2022), `--mc K`, its coefficient "
             "fixed at 1 or learned by the paper's variance step"),
            "∇ L_K",
        ),
    )),)
