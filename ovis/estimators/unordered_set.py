"""The unordered set estimator (Kool, van Hoof & Welling, "Estimating Gradients for Discrete
Random Variables by Sampling without Replacement", ICLR 2020), with its built-in baseline.

An element is one outer sample: the iw particles ``e = (z_1 .. z_K)`` of one stochastic layer,
drawn from ``q(e) = prod_k q(z_k | x)`` over the ``S^K`` joint states (S = states of the layer);
``f(e)`` is its bound (the ELBO at iw = 1). The ``k = mc`` elements of a data point are drawn
WITHOUT replacement (Gumbel-top-k over the ``S^K`` element log-probabilities). With ``p^{D\\A}(T)``
the probability of the unordered set T when sampling ``|T|`` elements without replacement from
the domain without A (the sum over the orderings of T of ``prod_i p(t_i) / (1 - p(A) - sum_{j<i}
p(t_j))``), ``R(S, s) = p^{D\\s}(S\\s) / p(S)`` and ``R^{D\\s}(S, s') = p^{D\\{s,s'}}(S\\{s,s'}) /
p^{D\\s}(S\\s)`` (1 at s' = s), the paper's estimator with its built-in baseline::

    sum_{s in S} p(s) R(S, s) [grad f(s) + grad log p(s) (f(s) - sum_{s' in S} p(s') R^{D\\s}(S, s') f(s'))]

The first term is the unordered set estimator of ``E_q[grad f]``; the baseline of s is the
estimate, from the other k - 1 elements, of ``E_q[f]`` (``p(s) f(s)`` plus ``1 - p(s)`` times the
unordered set estimate of the mean over the domain without s), so it needs ``mc >= 2``. Unbiased
for the gradient of L_K (the ELBO at iw = 1, the IW-Renyi bound at alpha > 0), theta and phi, for
one stochastic layer; the set probabilities sum over the k! orderings, so ``mc <= 4``. One model
evaluation per particle.
"""
import itertools
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..models.sampling import LatentSampler
from .relaxations import UNIFORM_EPS
from .particles import Particles, RuntimeOptions, iw_bound, sample_particles
from .factorised import (DiscreteLatentEstimator, LatentGroup, LeafSample, latent_kind,
                         unit_probabilities, unit_values)
from .registry import EstimatorFamily, Style

MAX_SET = 4  # the set probabilities sum over mc! orderings
MAX_ELEMENTS = 2 ** 16


def set_probability(p: Tensor, excluded: Tensor) -> Tensor:
    """``p^{D\\A}(T)``: probability of drawing the unordered set T, elements' probabilities
    ``p [..., m]``, in m draws without replacement from the domain without A, ``p(A) = excluded
    [...]``; a sum over the m! orderings. Returns ``[...]``."""
    m = p.shape[-1]
    if m == 0:
        return torch.ones_like(excluded)
    orders = torch.tensor(list(itertools.permutations(range(m))), device=p.device)  # [m!, m]
    ordered = p[..., orders]  # [..., m!, m]
    before = ordered.cumsum(-1) - ordered  # [..., m!, m]: mass drawn before each position
    # the mass left always holds the element drawn next: the bound keeps rounding (and tuples
    # with repeated elements, of probability zero) from dividing by zero
    remaining = torch.maximum(1 - excluded[..., None, None] - before, ordered).clamp(min=torch.finfo(p.dtype).tiny)
    return (ordered / remaining).prod(-1).sum(-1)


def without(k: int, removed: Tuple[int, ...]) -> List[int]:
    return [i for i in range(k) if i not in removed]


def leave_out_weights(p: Tensor) -> Tuple[Tensor, Tensor]:
    """``R(S, s) [..., k]`` and ``R^{D\\s}(S, s') [..., k, k]`` (1 on the diagonal) from the
    probabilities of the k distinct elements ``p [..., k]`` (module docstring)."""
    k = p.shape[-1]
    one_out = torch.tensor([without(k, (s,)) for s in range(k)], device=p.device)  # [k, k - 1]
    p_one_out = set_probability(p[..., one_out], p)  # p^{D\s}(S\s)  [..., k]
    two_out = torch.tensor([[without(k, (s, t)) if s != t else without(k, (s,))[:k - 2] for t in range(k)]
                            for s in range(k)], dtype=torch.long, device=p.device).view(k, k, k - 2)  # [k, k, k - 2]
    pair_mass = p[..., :, None] + p[..., None, :]  # [..., k, k]
    p_two_out = set_probability(p[..., two_out], pair_mass)  # p^{D\{s,s'}}(S\{s,s'})  [..., k, k]
    baseline_weights = p_two_out / p_one_out[..., None]  # [..., k, k]
    eye = torch.eye(k, dtype=torch.bool, device=p.device)
    baseline_weights = torch.where(eye, torch.ones_like(baseline_weights), baseline_weights)
    return p_one_out / set_probability(p, torch.zeros_like(p[..., 0]))[..., None], baseline_weights


class WithoutReplacementSampler(LatentSampler):
    """Draws, per data point of a ``[bs * mc * iw]``-row pass, ``mc`` distinct elements (iw-tuples
    of joint states of the layer) by Gumbel-top-k over their log-probabilities under q."""

    def __init__(self, mc: int, iw: int, check: Callable[[List[LatentGroup]], None]):
        self.mc, self.iw, self.check = mc, iw, check

    def __call__(self, group: int, q: Distribution) -> Tensor:
        probs = unit_probabilities(q).detach()  # [rows, N, C]
        rows, N, C = probs.shape
        unit = LatentGroup(latent_kind(q), N, C)
        self.check([unit] * (group + 1))  # before enumerating the S^K elements
        first = probs.view(-1, self.mc * self.iw, N, C)[:, 0]  # [bs, N, C]: q(z|x) is the same for all particles
        states = torch.tensor(list(itertools.product(range(C), repeat=N)), device=probs.device)  # [S, N]
        state_log_q = first.log()[:, torch.arange(N, device=probs.device), states].sum(-1)  # [bs, S]
        grids = torch.meshgrid(*[torch.arange(states.shape[0], device=probs.device)] * self.iw, indexing="ij")
        elements = torch.stack(grids, -1).reshape(-1, self.iw)  # [S^K, K]
        element_log_q = state_log_q[:, elements].sum(-1)  # [bs, S^K]
        uniform = torch.rand_like(element_log_q).clamp_(min=UNIFORM_EPS)
        drawn = (element_log_q - torch.log(-torch.log(uniform))).topk(self.mc, dim=-1).indices  # [bs, mc]
        indices = states[elements[drawn]]  # [bs, mc, K, N]
        return unit_values(indices.reshape(rows, N), unit, probs.dtype)


class UnorderedSet(DiscreteLatentEstimator):
    """The unordered set estimator with its built-in baseline (module docstring) over ``2 <= mc
    <= 4`` elements drawn without replacement, one stochastic layer with at most ``max_elements``
    elements (``S^K``)."""
    name = "unordered-set"
    joint_samples = True
    max_groups = 1
    min_mc = 2

    def __init__(self, mc: int = 2, iw: int = 1, max_elements: int = MAX_ELEMENTS, **options):
        if mc > MAX_SET:
            raise ValueError(f"UnorderedSet sums its set probabilities over the mc! orderings of the sample: it takes "
                             f"mc <= {MAX_SET}, got mc={mc}; use mc={MAX_SET} or fewer")
        super().__init__(mc, iw, **options)
        self.max_elements = int(max_elements)

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if not getattr(model, "accepts_sampler", False):
            self.check_sampler(model, LeafSample(), "draws its samples without replacement")

    def check_groups(self, groups: List[LatentGroup]) -> None:
        super().check_groups(groups)
        states, size = groups[0].states, f"({groups[0].categories}^{groups[0].units})^{self.iw}"
        if states ** self.iw > self.max_elements:
            raise ValueError(f"unordered-set draws its elements out of S^K = {size} iw-tuples of latent states "
                             f"per data point, more than max_elements = {self.max_elements}: use a layer "
                             f"with few joint states (e.g. --model vae --prior categorical --N 1) and a small --iw, "
                             f"or an estimator that samples with replacement, such as reinforce-loo or "
                             f"vimco-arithmetic")
        if states ** self.iw < self.mc:
            raise ValueError(f"unordered-set draws mc = {self.mc} distinct elements, but there are only S^K = "
                             f"{size} iw-tuples of latent states: use --mc {states ** self.iw} or fewer")

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

    def baselines(self, p: Tensor, bound: Tensor) -> Tuple[Tensor, Tensor]:
        """``p(s) R(S, s)`` and the baselines ``sum_s' p(s') R^{D\\s}(S, s') f(s')``, ``[bs, mc]`` each."""
        set_weights, baseline_weights = leave_out_weights(p)  # [bs, mc], [bs, mc, mc]
        return p * set_weights, (baseline_weights * (p * bound)[:, None, :]).sum(-1)

    def surrogate(self, model: Optional[nn.Module], x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc]: f(s) with the log q term
        log_q = particles.log_qz.sum((2, 3))  # [bs, mc]: log q of each element, graph of phi
        with torch.no_grad():
            weights, baselines = self.baselines(log_q.exp(), bound)  # [bs, mc] x 2
            score = weights * (bound - baselines)  # [bs, mc]
        return -((weights * bound).sum(1) + (score * log_q).sum(1)), {}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_elements={self.max_elements}"


FAMILIES = (EstimatorFamily(name="unordered-set", grammar="unordered-set",
                            ids={"unordered-set": (UnorderedSet, {})}, examples=("unordered-set",),
                            label="unordered set", style=Style("#6a51a3", (10, 2)),
    table=(
        (
            "`unordered-set`",
            ("unordered set estimator with its built-in baseline over `--mc` (2 to 4) elements drawn without "
             "replacement by Gumbel-top-k (Kool et al. 2020), one layer with few joint states (e.g. `--model vae "
             "--prior categorical --N 1`)"),
            "∇ L_K",
        ),
    )),)
