"""RODEO (Shi, Zhou, Hwang, Titsias & Mackey, "Gradient Estimation with Discrete Stein Operators",
NeurIPS 2022; public code github.com/thjashin/rodeo, ``networks.py``): leave-one-out REINFORCE plus
control variates from the Gibbs Stein operator.

The ``mc`` outer samples of a data point are independent; ``f_m`` is the bound of sample m (the
ELBO at iw = 1) as a function of its binary latents ``x_m`` (the D units of all iw particles of
one layer), ``p = E_q[x]``, ``s_m = grad_x f_m`` at the sampled latents. The Gibbs sampler that
flips unit d of x with probability ``w_d = q_d(1 - x_d)`` leaves q invariant; its Stein operator
``(A h)(x) = sum_d w_d (h(y_d) - h(x))`` (``y_d``: x with unit d flipped) has ``E_q[A h] = 0`` for
every h. The functions of sample m are built from the other samples only: the mean of their
first-order Taylor expansions, centred, ``t_m(y) = mean_{j != m} s_j . (y - x_j)``, and their mean
bound ``f_-m``. Two control functions ``h0_m``, ``h1_m`` of y (one for each control variate) are
functions of ``t_m(y)`` (and ``f_-m``). With ``loo`` the mean over the other samples, the gradient
with respect to the logit of unit d of sample m is::

    (f_m - loo(f + a A h0)_m) (x_md - p_d)                     leave-one-out baseline + scalar CV
      + b [A (h1_m grad log q)](x_m)_d                          vector CV
    = (x_md - p_d) (f_m - loo(f + a A h0)_m + b ((A h1_m)(x_m) - h1_m(y_md)))

``rodeo`` and ``rodeo-learned`` take ``h0_m = h1_m = t_m`` (the Taylor features, no network).
``rodeo`` fixes ``a = 1`` and ``b = 1/2``, for which the baseline is ``E f`` and the coordinate
cross terms cancel when f is linear in x. ``rodeo-learned`` learns ``a`` and ``b`` as the paper
does, from 0 (the trainer's Adam on the estimator's parameters, ``--baseline_lr``), by a step on
``mean_n G_n^2`` after every estimate, ``G_n = G0 + a Ga + b Gb`` the estimate for an offset on
the logits of unit n (in all its particles), ``G0`` the leave-one-out term and ``Ga``, ``Gb`` the
two control variates' terms: a zero-valued term of the loss carries the gradient of that mean
(``double_cv.variance_step``'s objective; the log q term of the loss, which does not depend on
them, is left out of G). ``rodeo-net`` is the paper's: ``(h0_m, h1_m)(y) = g(t_m(y), f_-m)``, g a
network (``ControlNetwork``: one hidden layer of 100 LeakyReLU units, two outputs), learned with
``a`` and ``b`` by the same step (G then depends on g's parameters through ``Ga`` and ``Gb``). It
starts as the paper's code and ``rodeo-learned`` do: ``a = b = 0`` (the leave-one-out estimator),
g at a random Glorot-uniform start. This is the paper code's ``discrete_stein_avg`` (g of the mean
Taylor expansion; its README's choice at K = 2, ``discrete_stein_output_avg`` at K > 2 averages g
over the other samples' own expansions instead); that code takes the loss ``-f`` for f and averages
A over the units (a factor 1/D): the same family of g, a and b.
Each ``h_m`` depends on the other samples only, and A has zero mean under q given the other samples,
so the estimator is unbiased for the gradient of L_K (the ELBO at iw = 1, the IW-Renyi bound at
alpha > 0), theta and phi, for one layer of Bernoulli latents, at any a, b and g fixed before the
step. The neighbours ``y_md`` enter through the Taylor expansions (no model evaluation): one model
evaluation per particle and one backward pass of the bounds to the latents (the leaves of
``double-cv``).
"""
from typing import Dict, Tuple

import torch
from torch import Tensor, nn

from .relaxations import bernoulli_logits
from .particles import Particles, RuntimeOptions, iw_bound
from .double_cv import DoubleControlVariate, leave_one_out
from .registry import EstimatorFamily, Style


def taylor_features(slopes: Tensor, x: Tensor) -> Tuple[Tensor, Tensor]:
    """``t_m(y_md) [bs, mc, D]`` and ``t_m(x_m) [bs, mc]`` (module docstring); ``slopes``, ``x [bs, mc, D]``."""
    others = leave_one_out(slopes)  # s_-m  [bs, mc, D]
    at_sample = (others * x).sum(-1) - leave_one_out((slopes * x).sum(-1))  # t_m(x_m)  [bs, mc]
    return at_sample[..., None] + others * (1 - 2 * x), at_sample  # t_m(y_md) = t_m(x_m) + s_-m,d (1 - 2 x_d)


def stein_terms(at_neighbours: Tensor, at_sample: Tensor, x: Tensor, p: Tensor) -> Tuple[Tensor, Tensor]:
    """``(A h0_m)(x_m) [bs, mc]`` and the vector control variate's factor ``(A h1_m)(x_m) - h1_m(y_md)
    [bs, mc, D]``; ``at_neighbours [bs, mc, D, 2]`` and ``at_sample [bs, mc, 2]``: h0, h1 at ``y_md``
    and at ``x_m``; ``x``, ``p [bs, mc, D]``."""
    flip = p + x - 2 * p * x  # w_d = q_d(1 - x_d)  [bs, mc, D]
    stein = (flip[..., None] * (at_neighbours - at_sample[..., None, :])).sum(-2)  # (A h0, A h1)(x_m)  [bs, mc, 2]
    return stein[..., 0], stein[..., 1:] - at_neighbours[..., 1]


NEGATIVE_SLOPE = 0.3  # of the network's LeakyReLU units, as in the paper's code


def piecewise_linear_tables(inputs: nn.Linear, outputs: nn.Linear, others_bound: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    """The network of ``ControlNetwork`` as a function of its input t, for each ``others_bound [...]``:
    ``sum_k v_k leaky(w_k t + c_k) + v_0`` is linear in t between the kinks ``-c_k / w_k``. Returns the
    sorted kinks ``[..., H]`` and the slopes and intercepts ``[..., H + 1, 2]`` of the H + 1 pieces
    (piece j: t above j kinks), differentiable in the network's parameters."""
    w = inputs.weight[:, 0]  # [H]
    c = others_bound[..., None] * inputs.weight[:, 1] + inputs.bias  # [..., H]
    v = outputs.weight.t()  # [H, 2]
    terms = torch.stack([(w[:, None] * v).expand(*c.shape, 2), c[..., None] * v], -1)  # v_k (w_k, c_k)  [..., H, 2, 2]
    with torch.no_grad():
        kinks, order = torch.where(w != 0, -c / torch.where(w != 0, w, 1), torch.inf).sort(-1)  # [..., H]
    positive_below = ((w < 0) | ((w == 0) & (c > 0))).to(c.dtype)  # unit k above its kink for t below all kinks  [..., H]
    start = ((positive_below + NEGATIVE_SLOPE * (1 - positive_below))[..., None, None] * terms).sum(-3)  # [..., 2, 2]
    change = (1 - NEGATIVE_SLOPE) * torch.sign(w).expand_as(c)  # the unit's factor's change at its kink  [..., H]
    steps = (change[..., None, None] * terms).gather(-3, order[..., None, None].expand_as(terms))  # sorted  [..., H, 2, 2]
    pieces = torch.cat([torch.zeros_like(start)[..., None, :, :], steps.cumsum(-3)], -3) + start[..., None, :, :]
    return kinks, pieces[..., 0], pieces[..., 1] + outputs.bias  # [..., H], [..., H + 1, 2] twice


class ControlNetwork(nn.Module):
    """The paper's control function g: ``(t, f_-m) -> (h0, h1)``, one hidden layer of ``hidden``
    LeakyReLU units (negative slope 0.3), Glorot-uniform weights and zero biases (the Keras
    defaults of the paper's code). It is evaluated at the n points of each ``f_-m`` as the
    piecewise linear function of t that it is (``piecewise_linear_tables``): ``O(H log H + n)``
    per ``f_-m`` instead of the ``O(n H)`` of the hidden layer at every point."""

    def __init__(self, hidden: int = 100):
        super().__init__()
        self.inputs, self.outputs = nn.Linear(2, hidden), nn.Linear(hidden, 2)
        for layer in (self.inputs, self.outputs):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, taylor: Tensor, others_bound: Tensor) -> Tensor:
        """``[..., n, 2]`` from ``taylor [..., n]`` (``t_m`` at n points) and ``others_bound [...]`` (``f_-m``)."""
        kinks, slopes, intercepts = piecewise_linear_tables(self.inputs, self.outputs, others_bound)
        piece = torch.searchsorted(kinks, taylor.contiguous())  # kinks below t  [..., n]
        piece = piece[..., None].expand(*piece.shape, 2)  # [..., n, 2]
        return slopes.gather(-2, piece) * taylor[..., None] + intercepts.gather(-2, piece)  # [..., n, 2]


class Rodeo(DoubleControlVariate):
    """RODEO with the Taylor features as its control functions (module docstring): ``mc >= 2``
    independent samples of one layer of Bernoulli latents, a model that accepts samplers;
    ``scalar_scale`` a, ``vector_scale`` b (with ``learn``: their starting values)."""
    name = "rodeo"
    latent_types = frozenset({"bernoulli"})

    def __init__(self, mc: int = 2, iw: int = 1, scalar_scale: float = 1.0, vector_scale: float = 0.5,
                 learn: bool = False, **options):
        super().__init__(mc, iw, **options)
        self.learn = self.owns_parameters = bool(learn)
        if self.learn:
            self.scalar_scale = nn.Parameter(torch.tensor(float(scalar_scale)))
            self.vector_scale = nn.Parameter(torch.tensor(float(vector_scale)))
        else:
            self.scalar_scale, self.vector_scale = float(scalar_scale), float(vector_scale)

    def control_functions(self, taylor: Tensor, bound: Tensor) -> Tensor:
        """``(h0_m, h1_m) [bs, mc, n, 2]`` at the n points whose ``t_m`` is ``taylor [bs, mc, n]``;
        ``bound [bs, mc]`` (f)."""
        return torch.stack([taylor, taylor], -1)

    def control_variates(self, bound: Tensor, slopes: Tensor, x: Tensor, p: Tensor) -> Tuple[Tensor, Tensor]:
        """``stein_terms`` of the control functions at the neighbours and at the sample; ``bound
        [bs, mc]``, ``slopes``, ``x``, ``p [bs, mc, D]`` without gradient."""
        at_neighbours, at_sample = taylor_features(slopes, x)  # [bs, mc, D], [bs, mc]
        values = self.control_functions(torch.cat([at_neighbours, at_sample[..., None]], -1), bound)  # [bs, mc, D + 1, 2]
        return stein_terms(values[..., :-1, :], values[..., -1, :], x, p)

    def logit_coefficients(self, bound: Tensor, stein: Tensor, vector: Tensor) -> Tensor:
        """The factor of ``(x_md - p_d)`` (module docstring), ``[bs, mc, D]``; ``bound``, ``stein
        [bs, mc]``, ``vector [bs, mc, D]``; no gradient."""
        a, b = self.coefficients()
        baseline = leave_one_out(bound + a * stein)  # [bs, mc]
        return (bound - baseline)[..., None] + b * vector

    def coefficient_learning(self, bound: Tensor, stein: Tensor, vector: Tensor, score: Tensor) -> Tensor:
        """``[bs]``, zero-valued: its gradient is that of ``mean_n G_n^2`` of each data point with
        respect to a, b (and the network of ``stein [bs, mc]`` and ``vector [bs, mc, D]``) (module
        docstring); ``bound [bs, mc]``, ``score = x - p [bs, mc, D]``."""
        per_logit = torch.stack([(bound - leave_one_out(bound))[..., None] * score,
                                 -leave_one_out(stein)[..., None] * score, vector * score]).mean(2)  # [3, bs, D]
        parts = per_logit.reshape(3, bound.shape[0], self.iw, -1).sum(2)  # G0, Ga, Gb per unit  [3, bs, N]
        estimate = parts[0] + self.scalar_scale * parts[1] + self.vector_scale * parts[2]  # G  [bs, N]
        objective = estimate.square().mean(-1)  # [bs]
        return objective - objective.detach()

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc], with the log q term
        bs, mc = bound.shape
        slopes = self.slopes(bound, particles).detach().reshape(bs, mc, -1)  # [bs, mc, D]
        logits = bernoulli_logits(particles.output["qz"][0])  # [rows, N]
        p = torch.sigmoid(logits.detach()).reshape(bs, mc, -1)  # [bs, mc, D]
        z = particles.leaves[0].detach().reshape(bs, mc, -1)  # [bs, mc, D]
        learning = self.learn and self.training and torch.is_grad_enabled()
        with torch.set_grad_enabled(learning):  # the network's graph, for its step
            stein, vector = self.control_variates(bound.detach(), slopes, z, p)  # [bs, mc], [bs, mc, D]
        with torch.no_grad():
            gradient = self.logit_coefficients(bound.detach(), stein, vector) * (z - p)  # [bs, mc, D]
        phi_term = (gradient * logits.reshape(bs, mc, -1)).sum(-1)  # [bs, mc]
        loss = -(bound + phi_term).mean(1)  # [bs]
        if learning:
            loss = loss + self.coefficient_learning(bound.detach(), stein, vector, z - p)
        return loss, {}

    def coefficients(self) -> Tuple:
        """a and b without gradient."""
        return tuple(c.detach() if self.learn else c for c in (self.scalar_scale, self.vector_scale))

    def extra_repr(self) -> str:
        a, b = (float(c) for c in self.coefficients())
        return f"mc={self.mc}, iw={self.iw}, scalar_scale={a:g}, vector_scale={b:g}, learn={self.learn}"


class RodeoNet(Rodeo):
    """RODEO with the paper's learned network (module docstring): the control functions are
    ``ControlNetwork(hidden)`` of the Taylor features and ``f_-m``, learned with a and b (from
    ``scalar_scale``, ``vector_scale``) by the variance step."""
    name = "rodeo-net"

    def __init__(self, mc: int = 2, iw: int = 1, scalar_scale: float = 0.0, vector_scale: float = 0.0,
                 hidden: int = 100, **options):
        super().__init__(mc, iw, scalar_scale, vector_scale, learn=True, **options)
        self.network = ControlNetwork(hidden)

    def control_functions(self, taylor: Tensor, bound: Tensor) -> Tensor:
        return self.network(taylor, leave_one_out(bound))  # g(t_m, f_-m)  [bs, mc, n, 2]


FAMILIES = (EstimatorFamily(name="rodeo", grammar="rodeo | rodeo-learned | rodeo-net",
                            ids={"rodeo": (Rodeo, {}),
                                 "rodeo-learned": (Rodeo, {"learn": True, "scalar_scale": 0.0, "vector_scale": 0.0}),
                                 "rodeo-net": (RodeoNet, {})},
                            examples=("rodeo", "rodeo-learned", "rodeo-net"),
                            label={"rodeo": "RODEO", "rodeo-learned": "RODEO, learned a, b",
                                   "rodeo-net": "RODEO, learned network"},
                            style={"rodeo": Style("#31a354", (10, 3)),
                                   "rodeo-learned": Style("#31a354", (10, 3, 1), shade=0.4, linestyle="--"),
                                   "rodeo-net": Style("#31a354", (10, 3, 2), shade=-0.4, linestyle=":")},
    table=(
        (
            "`rodeo`, `rodeo-learned`, `rodeo-net`",
            ("RODEO (Shi et al. 2022): leave-one-out plus Gibbs Stein-operator control variates, of the Taylor "
             "features with fixed coefficients or coefficients learned by the paper's variance step, or of the "
             "paper's network of them learned with its coefficients; one layer of Bernoulli latents, `--mc K >= 2`"),
            "∇ L_K",
        ),
    )),)
