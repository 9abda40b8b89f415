"""MuProp (Gu, Levine, Sutskever & Mnih, 2016) and the SimpleMuProp of the REBAR code.

The mean-field pass evaluates the model with every latent group replaced by the mean of its q
given the means of the groups drawn before it (``ovis.models.sampling.MeanField``); ``f`` is the
bound ``L`` of the particles (the ELBO at iw = 1) as a function of the latents, ``z_bar`` the
mean-field values. With all K particles at ``z_bar``, ``f(z_bar) = l_bar / (1 - alpha)`` and
``df / dz_kg = (d l_bar / d z_g) / (K (1 - alpha))`` (one pass per data point, not per particle).

MuProp: the first-order Taylor expansion ``f(z_bar) + sum_kg f'_kg (z_kg - z_bar_g)`` is the
control variate; particle k's group g (score term ``grad log q(z_kg | parents)``) uses the terms
of the other particles and of its own groups drawn up to g, and the analytic expectation of its
own group-g term, ``f'_kg . grad mu_kg`` (``mu_kg`` the mean of q(z_kg | sampled parents)), is
added. Terms of groups drawn after g are left out (they depend on z_kg through their
distribution). SimpleMuProp: the baseline ``f(z_bar)`` alone. Both: theta gets the exact gradient
of L_K, phi an unbiased estimate of its gradient (L_K at iw = K, the ELBO at iw = 1).

Learned (``muprop-learned``, ``simple-muprop-learned``: the MuProp and SimpleMuProp of the REBAR
code, Tucker et al. 2017): ``c_kg = s_0 f(z_bar) + s_1 (linear terms) + b(x)`` with scales
``s = 2 sigmoid(v)`` (1 at the start) and an input-dependent baseline ``b`` (one tanh hidden layer),
all trained by the mean squared error to the learning signal; the analytic term is scaled by
``s_1``. None of them depends on the particles: the estimate stays unbiased. The REBAR code keeps
scales and a baseline per layer; here they are shared by the latent groups.
"""
import math
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .relaxations import MeanField
from .particles import sample_particles
from .score_function import ScoreFunctionEstimator
from .registry import EstimatorFamily, Style
from .rebar import tanh_network


class MuProp(ScoreFunctionEstimator):
    """MuProp (``first_order=True``) or SimpleMuProp (module docstring). Two model evaluations
    per step (hard particles, mean field) and one backward pass of the mean-field pass.
    ``learned``: the REBAR code's learned scales and baseline (module docstring), ``baseline_hdim``
    the baseline's width (100: the REBAR code's); needs ``x_shape``."""
    needs_model = True

    def model_evaluations(self, latent_size: Optional[int] = None) -> int:
        """The particles' pass and one mean-field pass per data point."""
        return self.mc * self.iw + 1

    def __init__(self, mc: int = 1, iw: int = 1, first_order: bool = True, learned: bool = False,
                 baseline_hdim: int = 100, x_shape=None, **options):
        super().__init__(mc, iw, x_shape=x_shape, **options)
        self.first_order, self.learned = bool(first_order), bool(learned)
        self.learns_control_variate = self.owns_parameters = self.learned
        if self.learned:
            if x_shape is None:
                raise ValueError("the learned MuProp needs x_shape= (the shape of one data point) for its baseline")
            self.scale_logits = nn.Parameter(torch.zeros(2))  # s_0, s_1 = 2 sigmoid(v): 1 at v = 0
            self.baseline = tanh_network(math.prod(x_shape), baseline_hdim)

    def learned_terms(self, x: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """``s_0``, ``s_1`` (0-dim) and ``b(x) [bs]`` of the ``learned`` form."""
        scale_value, scale_linear = (2 * torch.sigmoid(self.scale_logits)).unbind()
        return scale_value, scale_linear, self.baseline(2 * x.flatten(1) - 1).squeeze(-1)

    def check_model(self, model) -> None:
        super().check_model(model)
        self.check_sampler(model, MeanField(), "evaluates the model at the mean-field latents")

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options) -> Tensor:
        return log_weights.new_zeros(())  # all of it is in group_terms

    def mean_field(self, model, x: Tensor, options) -> Tuple[Tensor, Dict[int, Tensor], Dict[int, Tensor]]:
        """``f(z_bar) [bs]``, ``{g: z_bar_g [bs, N_g]}`` in sampling order and ``{g: d f / d z_g}``
        at K = 1 (no graph)."""
        sampler = MeanField()
        with torch.enable_grad():
            particles = sample_particles(model, x, 1, 1, False, options, sampler=sampler)
            log_weight = particles.log_weights(options)[:, 0, 0]  # [bs]
            values = dict(sampler.values)  # insertion order = sampling order
            slopes = torch.autograd.grad(log_weight.sum(), list(values.values()), allow_unused=True) \
                if self.first_order else [None] * len(values)
        scale = 1 / (1 - options.alpha)
        slopes = {g: (torch.zeros_like(v) if s is None else s * scale) for (g, v), s in zip(values.items(), slopes)}
        return log_weight.detach() * scale, {g: v.detach() for g, v in values.items()}, slopes

    def group_terms(self, model, x, particles, control_variate, options):
        value, means, slopes = self.mean_field(model, x, options)  # [bs], {g: [bs, N_g]} x 2
        bs, mc, K = particles.log_px.shape
        baseline = value.view(bs, 1, 1, 1)
        if self.learned:  # the plain forms skip these operations
            scale_value, scale_linear, input_baseline = self.learned_terms(x)  # [], [], [bs]
            baseline = scale_value * baseline + input_baseline.view(bs, 1, 1, 1)
        if not self.first_order:
            return baseline, 0.0
        z, qz = particles.output["z"], particles.output["qz"]
        order = list(means)  # sampling order
        linear, analytic = [], 0.0
        for g in order:
            slope = (slopes[g] / K).repeat_interleave(mc * K, 0)  # [rows, N_g]
            centred = z[g].detach() - means[g].repeat_interleave(mc * K, 0)  # [rows, N_g]
            linear.append((slope * centred).flatten(1).sum(1).view(bs, mc, K))
            analytic = analytic + (slope * qz[g].mean).flatten(1).sum(1).view(bs, mc, K).sum(-1)  # [bs, mc]
        terms = torch.stack(linear, -1)  # [bs, mc, K, G] in sampling order: f'_kg (z_kg - z_bar_g)
        others = terms.sum((-2, -1), keepdim=True) - terms.sum(-1, keepdim=True)  # [bs, mc, K, 1]
        own = terms.cumsum(-1)  # [bs, mc, K, G]: own groups drawn up to g
        positions = torch.tensor([order.index(g) for g in range(len(order))], device=terms.device)
        linear_terms = others + own.index_select(-1, positions)  # [bs, mc, K, G]
        if self.learned:
            return baseline + scale_linear * linear_terms, scale_linear.detach() * analytic
        return baseline + linear_terms, analytic

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, first_order={self.first_order}, learned={self.learned}"


FAMILIES = (EstimatorFamily(
    name="muprop", grammar="muprop | simple-muprop | muprop-learned | simple-muprop-learned",
    ids={"muprop": (MuProp, {"first_order": True}), "simple-muprop": (MuProp, {"first_order": False}),
         "muprop-learned": (MuProp, {"first_order": True, "learned": True}),
         "simple-muprop-learned": (MuProp, {"first_order": False, "learned": True})},
    examples=("muprop", "simple-muprop", "muprop-learned", "simple-muprop-learned"),
    label={"muprop": "MuProp", "simple-muprop": "SimpleMuProp", "muprop-learned": "MuProp (learned)",
           "simple-muprop-learned": "SimpleMuProp (learned)"},
    style={"muprop": Style("#808000", (6, 0)), "simple-muprop": Style("#bcbd22", (6, 1)),
           "muprop-learned": Style("#556b2f", (6, 2)), "simple-muprop-learned": Style("#dbdb8d", (6, 3))},
    table=(
        (
            "`muprop`, `simple-muprop`, `muprop-learned`, `simple-muprop-learned`",
            ("first-order Taylor control variate around the mean-field pass (Gu et al. 2016) and the REBAR code's "
             "simpler variant; `-learned`: with the REBAR code's learned scales and input-dependent baseline"),
            "∇ L_K",
        ),
    )),)
