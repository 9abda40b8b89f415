"""The unordered set estimator (Kool, van Hoof & Welling, "Estimating Gradients for Discrete
Random Variables by Sampling without Replacement", ICLR 2020), with its built-in baseline.

An element is one outer sample: the iw particles ``e = (z_1 .. z_K)`` of one stochastic layer,
drawn from ``q(e) = prod_k prod_n q(z_kn | x)``, a factorised law over K * N units of C
categories (``C^{N K}`` elements); ``f(e)`` is its bound (the ELBO at iw = 1). The ``k = mc``
elements of a data point are drawn WITHOUT replacement by stochastic beam search over the units
(the Gumbel-top-k of all elements without enumerating them, ``without_replacement.py``). With
``p^{D\\A}(T)`` the probability of the unordered set T when sampling ``|T|`` elements without
replacement from the domain without A (``int_0^1 prod_{t in T} (1 - u^{p(t) / r}) du``, ``r = 1 -
p(A) - p(T)``, by a fixed quadrature in log space), ``R(S, s) = p^{D\\s}(S\\s) / p(S)`` and
``R^{D\\s}(S, s') = p^{D\\{s,s'}}(S\\{s,s'}) / p^{D\\s}(S\\s)`` (1 at s' = s), the paper's estimator
with its built-in baseline::

    sum_{s in S} p(s) R(S, s) [grad f(s) + grad log p(s) (f(s) - sum_{s' in S} p(s') R^{D\\s}(S, s') f(s'))]

The first term is the unordered set estimator of ``E_q[grad f]``; the baseline of s is the
estimate, from the other k - 1 elements, of ``E_q[f]`` (``p(s) f(s)`` plus ``1 - p(s)`` times the
unordered set estimate of the mean over the domain without s), so it needs ``mc >= 2``. Unbiased
for the gradient of L_K (the ELBO at iw = 1, the IW-Renyi bound at alpha > 0), theta and phi, for
one stochastic layer of Bernoulli or categorical latents with at least mc elements; ``mc <= 16``,
where the quadrature is tested. One model evaluation per particle (``mc * iw``).
Public code: github.com/wouterkool/estimating-gradients-without-replacement.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..models.sampling import LatentSampler
from .particles import Particles, RuntimeOptions, iw_bound, sample_particles
from .factorised import (DiscreteLatentEstimator, LatentGroup, LeafSample, latent_kind,
                         unit_probabilities, unit_values)
from .registry import EstimatorFamily, Style
from .without_replacement import log_leave_out, sample_without_replacement

MAX_SET = 16  # the quadrature of the set probabilities is tested up to 16 elements


class WithoutReplacementSampler(LatentSampler):
    """Draws, per data point of a ``[bs * mc * iw]``-row pass, ``mc`` distinct elements (iw-tuples
    of joint states of the layer) by stochastic beam search over the iw * N units (in blocks)."""

    def __init__(self, mc: int, iw: int, check: Callable[[List[LatentGroup]], None]):
        self.mc, self.iw, self.check = mc, iw, check

    def __call__(self, group: int, q: Distribution) -> Tensor:
        probs = unit_probabilities(q).detach()  # [rows, N, C]
        rows, N, C = probs.shape
        unit = LatentGroup(latent_kind(q), N, C)
        self.check([unit] * (group + 1))  # one layer with at least mc elements, before any draw
        first = probs.view(-1, self.mc * self.iw, N, C)[:, 0]  # [bs, N, C]: q(z|x) is the same for all particles
        units = first.log().repeat(1, self.iw, 1)  # [bs, iw * N, C]: particle slowest
        indices = sample_without_replacement(units, self.mc)  # [bs, mc, iw * N]
        return unit_values(indices.reshape(rows, N), unit, probs.dtype)


class UnorderedSet(DiscreteLatentEstimator):
    """The unordered set estimator with its built-in baseline (module docstring) over ``2 <= mc
    <= 16`` elements drawn without replacement, one stochastic layer with at least mc elements
    (``C^{N K}``)."""
    name = "unordered-set"
    joint_samples = True
    max_groups = 1
    min_mc = 2

    def __init__(self, mc: int = 2, iw: int = 1, **options):
        if mc > MAX_SET:
            raise ValueError(f"UnorderedSet computes its set probabilities by a quadrature tested up to "
                             f"{MAX_SET} elements: it takes mc <= {MAX_SET}, got mc={mc}; use mc={MAX_SET} or fewer")
        super().__init__(mc, iw, **options)

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if not getattr(model, "accepts_sampler", False):
            self.check_sampler(model, LeafSample(), "draws its samples without replacement")

    def check_groups(self, groups: List[LatentGroup]) -> None:
        super().check_groups(groups)
        elements, size = groups[0].states ** self.iw, f"({groups[0].categories}^{groups[0].units})^{self.iw}"
        if elements < self.mc:
            raise ValueError(f"unordered-set draws mc = {self.mc} distinct elements, but there are only S^K = "
                             f"{size} iw-tuples of latent states: use --mc {elements} or fewer")

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        return sample_particles(model, x, self.mc, self.iw, False, options, self.log_q,
                                sampler=WithoutReplacementSampler(self.mc, self.iw, self.check_groups))

    def tuple_probabilities(self, p: Tensor, latents: Tensor) -> Tensor:
        """Probability of each ordered tuple of elements drawn without replacement: ``latents
        [T, mc, iw, N]`` (binary), ``p [N]`` the units' probabilities -> ``[T]``."""
        element_q = torch.where(latents == 1, p, 1 - p).prod(-1).prod(-1)  # [T, mc]
        drawn_before = element_q.cumsum(-1) - element_q  # [T, mc]
        probability = (element_q / (1 - drawn_before)).prod(-1)  # [T]
        flat = latents.flatten(2)  # [T, mc, iw * N]
        same = (flat[:, :, None] == flat[:, None]).all(-1)  # [T, mc, mc]
        distinct = same.sum((1, 2)) == self.mc
        return torch.where(distinct, probability, torch.zeros_like(probability))

    def baselines(self, log_p: Tensor, bound: Tensor) -> Tuple[Tensor, Tensor]:
        """``p(s) R(S, s)`` and the baselines ``sum_s' p(s') R^{D\\s}(S, s') f(s')``, ``[bs, mc]`` each,
        from the elements' ``log_p`` and bounds ``f``, ``[bs, mc]`` each."""
        log_set, log_one_out, log_two_out = log_leave_out(log_p)  # [bs], [bs, mc], [bs, mc, mc]
        log_p = log_p.double()  # [bs, mc]
        weights = (log_p + log_one_out - log_set[:, None]).exp()  # [bs, mc]
        baseline_weights = (log_p[:, None, :] + log_two_out - log_one_out[:, :, None]).exp()  # [bs, mc, mc]
        baselines = (baseline_weights * bound.double()[:, None, :]).sum(-1)  # [bs, mc]
        return weights.to(bound.dtype), baselines.to(bound.dtype)

    def surrogate(self, model: Optional[nn.Module], x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc]: f(s) with the log q term
        log_q = particles.log_qz.sum((2, 3))  # [bs, mc]: log q of each element, graph of phi
        with torch.no_grad():
            weights, baselines = self.baselines(log_q, bound)  # [bs, mc] x 2
            score = weights * (bound - baselines)  # [bs, mc]
        return -((weights * bound).sum(1) + (score * log_q).sum(1)), {}


FAMILIES = (EstimatorFamily(name="unordered-set", grammar="unordered-set",
                            ids={"unordered-set": (UnorderedSet, {})}, examples=("unordered-set",),
                            label="unordered set", style=Style("#6a51a3", (10, 2)),
    table=(
        (
            "`unordered-set`",
            ("unordered set estimator with its built-in baseline over `--mc` (2 to 16) elements drawn without "
             "replacement by stochastic beam search (Kool et al. 2019, 2020), one layer of Bernoulli or categorical "
             "latents"),
            "∇ L_K",
        ),
    )),)
