"""Sampling without replacement from a factorised discrete distribution, and the probabilities of
unordered sets of its elements: what the unordered set estimator (``unordered_set.py``) needs.

Sampling: stochastic beam search (Kool, van Hoof & Welling, "Stochastic Beams and Where to Find
Them: The Gumbel-Top-k Trick for Sampling Sequences Without Replacement", ICML 2019). An element
is an assignment of U units of C categories with ``log p(e) = sum_u log p_u(e_u)``. Over the units
one after another, each of the k beams (partial assignments ``e_{<u}`` with ``phi = log p(e_{<u})``
and a perturbed value G) is extended by every category; the children's Gumbels ``G'_c ~
Gumbel(phi + log p_u(c))`` are conditioned on their maximum being the parent's G (``G_c = -log(e^{-G}
- e^{-Z} + e^{-G'_c})``, Z = max_c G'_c), and the k children with the largest G are kept. The
perturbed value of a partial assignment is then the maximum of the Gumbel-perturbed log-probabilities
of its completions, so the k final beams are the Gumbel-top-k of all C^U elements: k draws without
replacement, in the order of the draws. Any grouping of the units into steps gives the same law:
``sample_without_replacement`` takes blocks of units of at most 16 joint categories a step (4
Bernoulli units, one unit of 10 categories). Public code: github.com/wouterkool/stochastic-beam-search.

Set probabilities (Kool, van Hoof & Welling, ICLR 2020, appendix): with exponential clocks of
rates ``p_i`` over the domain without A, the unordered set T holds the first ``|T|`` draws iff its
last clock rings before the first of the rest (rate ``r = 1 - p(A) - p(T)``)::

    p^{D\\A}(T) = int_0^inf r e^{-r x} prod_{i in T} (1 - e^{-p_i x}) dx
                = int_0^1 prod_{i in T} (1 - u^{p_i / r}) du          (u = e^{-r x})

In ``t = log(r x)`` the integrand ``e^{t - e^t} prod_i (1 - exp(-a_i e^t))``, ``a_i = p_i / r``, is
log-concave with its peak in ``[0, log(|T| + 1)]``, decays at least like ``e^t`` below it and like
``e^{-e^t}`` above it, and is analytic in a strip of half-width pi/2: the trapezoidal rule on a fixed
grid of ``t`` is accurate to about 1e-13 relative up to ``|T| = 16`` (tested against the sum over
the orderings and the closed form at small ``a``), summed in log space so that sets of tiny
probability (``p(T) ~ |T|! prod a_i``) do not underflow.
"""
import math

import torch
import torch.nn.functional as F
from torch import Tensor

from .relaxations import UNIFORM_EPS

NODES = torch.linspace(-36.0, 4.6, 256, dtype=torch.float64)  # [n]: the grid in t = log(r x)
LOG_STEP = math.log((NODES[1] - NODES[0]).item())


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x <= 0`` (-inf at 0), accurate to double precision in absolute terms
    (what the sums it enters need), not in relative terms below ``x = -log 2``."""
    return torch.log(-torch.expm1(x))


def conditioned_gumbels(parent: Tensor, children: Tensor) -> Tensor:
    """Gumbels ``children [..., C]`` shifted so that their maximum is ``parent [...]``, the others
    keeping their law given that maximum (Kool et al. 2019, appendix B, in its stable form)."""
    top = children.max(-1, keepdim=True).values  # [..., 1]
    gap = parent[..., None] - children + log1mexp(children - top)  # [..., C]
    shifted = parent[..., None] - F.softplus(gap)  # [..., C]
    return torch.where(torch.isneginf(parent)[..., None], parent[..., None], shifted)  # [..., C]: dead beams stay dead


def stochastic_beam_search(log_p: Tensor, k: int) -> Tensor:
    """k elements drawn without replacement, in the order of the draws, from the factorised law of
    the units' log-probabilities ``log_p [bs, U, C]``: category indices ``[bs, k, U]``."""
    bs, units, categories = log_p.shape
    uniform = torch.rand(bs, units, k, categories, dtype=log_p.dtype, device=log_p.device)  # [bs, U, k, C]
    noise = -torch.log(-torch.log(uniform.clamp_(min=UNIFORM_EPS)))  # [bs, U, k, C]: standard Gumbels
    phi = log_p.new_zeros(bs, k)  # [bs, k]: log p of each beam's partial assignment
    perturbed = torch.full_like(phi, -math.inf)  # [bs, k]: the beams' G, one live beam (the empty assignment)
    perturbed[:, 0] = 0
    chosen = log_p.new_zeros(bs, k, 0, dtype=torch.long)  # [bs, k, u]
    for u in range(units):
        children = phi[:, :, None] + log_p[:, None, u]  # [bs, k, C]
        gumbels = conditioned_gumbels(perturbed, children + noise[:, u])  # [bs, k, C]
        perturbed, kept = gumbels.flatten(1).topk(k, dim=-1)  # [bs, k] x 2
        phi = children.flatten(1).gather(1, kept)  # [bs, k]
        parent = (kept // categories)[:, :, None].expand(-1, -1, u)  # [bs, k, u]
        chosen = torch.cat([chosen.gather(1, parent), (kept % categories)[:, :, None]], -1)  # [bs, k, u + 1]
    return chosen


def merge_units(log_p: Tensor, size: int) -> Tensor:
    """Consecutive blocks of ``size`` units as single units of ``C^size`` categories (the first unit
    of a block slowest), the last block padded with units of one certain category: ``log_p [bs, U, C]
    -> [bs, ceil(U / size), C^size]``."""
    bs, units, categories = log_p.shape
    padding = log_p.new_full((bs, -units % size, categories), -math.inf)  # [bs, pad, C]
    padding[..., 0] = 0
    blocks = torch.cat([log_p, padding], 1).view(bs, -1, size, categories)  # [bs, B, size, C]
    joint = blocks[:, :, 0]  # [bs, B, C]
    for unit in range(1, size):
        joint = (joint[..., :, None] + blocks[:, :, unit, None, :]).flatten(-2)  # [bs, B, C^(unit + 1)]
    return joint


def sample_without_replacement(log_p: Tensor, k: int, max_categories: int = 16) -> Tensor:
    """``stochastic_beam_search`` over blocks of units of at most ``max_categories`` joint
    categories (fewer steps, the same law): ``log_p [bs, U, C]`` -> category indices ``[bs, k, U]``."""
    bs, units, categories = log_p.shape
    size = max(1, int(math.log(max_categories) / math.log(categories) + 1e-9))
    chosen = stochastic_beam_search(merge_units(log_p, size), k)  # [bs, k, B]
    # [size]: first unit slowest (a constant list: a compiled step's C++ wrapper has no pow(int, tensor))
    place = torch.tensor([categories ** power for power in range(size - 1, -1, -1)], device=log_p.device)
    digits = chosen[..., None] // place % categories  # [bs, k, B, size]
    return digits.flatten(-2)[..., :units]


def log_factors(log_p: Tensor, log_rest: Tensor) -> Tensor:
    """``log(1 - exp(-a_i e^t))`` at the grid's t, ``a_i = p_i / r``: ``log_p [..., m]`` and ``log_rest
    [...]`` (log r) -> ``[..., m, n]`` (float64)."""
    y = log_p.double()[..., None] - log_rest.double()[..., None, None] + NODES.to(log_p.device)  # [..., m, n]
    y = y.clamp(min=-1e4)  # elements of probability 0 keep the sums below finite
    # where x = a_i e^t = e^y < e^-20, log(1 - e^-x) = log x - x / 2 to double precision (exp may underflow)
    return torch.where(y < -20, y - torch.exp(y) / 2, torch.log(-torch.expm1(-torch.exp(y))))


def log_integrand(log_factor_sum: Tensor) -> Tensor:
    """The log integrand times the grid's step, from the sum over T of ``log_factors``: ``[..., n]``."""
    nodes = NODES.to(log_factor_sum.device)  # [n]
    return LOG_STEP + nodes - nodes.exp() + log_factor_sum  # [..., n]


def log_integral(log_factor_sum: Tensor) -> Tensor:
    """``log p^{D\\A}(T)`` from the sum over T of ``log_factors``, ``[..., n] -> [...]``."""
    return torch.logsumexp(log_integrand(log_factor_sum), -1)


def log_rest(log_p: Tensor) -> Tensor:
    """``log(1 - sum_i p_i)`` from ``log_p [..., m]`` -> ``[...]`` (at least the smallest normal)."""
    mass = torch.logsumexp(log_p.double(), -1)  # [...]
    return log1mexp(mass.clamp(max=0)).clamp(min=math.log(torch.finfo(torch.float64).tiny))


def log_set_probability(log_p: Tensor, log_excluded: Tensor) -> Tensor:
    """``log p^{D\\A}(T)``: T's elements' log-probabilities ``log_p [..., m]``, A's ``log p(A)
    log_excluded [...]`` (``-inf``: A empty) -> ``[...]`` (float64)."""
    rest = log_rest(torch.cat([log_p.double(), log_excluded.double()[..., None]], -1))  # [...]
    return log_integral(log_factors(log_p, rest).sum(-2))


def log_leave_out(log_p: Tensor):
    """For a set S of k distinct elements, ``log_p [..., k]``: ``log p(S) [...]``, ``log p^{D\\s}(S\\s)
    [..., k]`` and ``log p^{D\\{s,s'}}(S\\{s,s'}) [..., k, k]`` (diagonal: ``log p^{D\\s}(S\\s)``), all with
    the same remaining mass ``r = 1 - p(S)`` (float64). The pairs' quadratures are one matrix product:
    their integrands are ``exp(V_s + V_s')`` with ``V_s = log integrand(S) / 2 - log factor(s)``, each
    ``exp(V_s)`` scaled by its maximum over the grid."""
    factors = log_factors(log_p, log_rest(log_p))  # [..., k, n]
    full = log_integrand(factors.sum(-2))  # [..., n]
    one_out = torch.logsumexp(full[..., None, :] - factors, -1)  # [..., k]
    half = full[..., None, :] / 2 - factors  # [..., k, n]
    top = half.amax(-1, keepdim=True)  # [..., k, 1]
    scaled = (half - top).exp()  # [..., k, n]
    two_out = (scaled @ scaled.transpose(-1, -2)).log() + top + top.transpose(-1, -2)  # [..., k, k]
    two_out = torch.diagonal_scatter(two_out, one_out, dim1=-2, dim2=-1)  # [..., k, k]
    return torch.logsumexp(full, -1), one_out, two_out
