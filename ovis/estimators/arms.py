"""ARMS (Dimitriev & Zhou, "ARMS: Antithetic-REINFORCE-Multi-Sample gradient for binary
variables", ICML 2021): the leave-one-out score function over n mutually antithetic samples.

The ``n = mc`` outer samples of a data point are drawn together: for every unit (of every
particle) the n uniforms behind ``b = 1[u < p]`` come from a copula with negatively correlated,
uniform marginals, so each sample has the law q and pairs have ``P(b_j = b_k = 1) = C(p, p)``:

* Dirichlet copula: ``d ~ Dirichlet(1, .., 1)``, ``u_k = (1 - d_k)^(n - 1)``, used as ``1 - u``
  when ``p >= 1/2``; ``C(m, m) = max(2 m^(1/(n-1)) - 1, 0)^(n - 1)`` with ``m = min(p, 1 - p)``;
* Gaussian copula: ``g ~ N(0, S)``, S with unit diagonal and correlations ``-1/(n - 1)``,
  ``u = Phi(g)``; ``C(m, m) = Phi(h) - 2 T(h, sqrt(n / (n - 2)))`` with ``h = Phi^-1(m)`` and
  Owen's T (n = 2: both copulas are the antithetic pair ``u, 1 - u``).

With ``f_k`` = the bound of sample k (all its iw particles; the ELBO at iw = 1) the gradient with
respect to each unit's logit is estimated by::

    1/n sum_k (f_k - mean_j f_j) (b_k - p) n / (n - 1) * p (1 - p) / (m - C(m, m))

the leave-one-out estimator rescaled by the pairs' correlation (its expectation is
``(n - 1)/n (m - C(m, m)) (E[f | b=1] - E[f | b=0])``). theta gets the exact gradient of the mean
of the ``f_k``, phi also its gradient at fixed b. Unbiased for the gradient of L_K (the ELBO at
iw = 1, the IW-Renyi bound at alpha > 0), theta and phi, for one layer of Bernoulli latents
(the units of a hierarchical q have sample-dependent p); one model evaluation per particle.
"""
import math
from typing import Dict, List, Tuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from ..models.sampling import LatentSampler
from .relaxations import UNIFORM_EPS, bernoulli_logits
from .particles import Particles, RuntimeOptions, iw_bound, sample_particles
from .factorised import DiscreteLatentEstimator, LeafSample, latent_groups
from .registry import EstimatorFamily, Style

COPULAS = ("dirichlet", "gaussian")
_NODES, _WEIGHTS = (torch.from_numpy(a) for a in np.polynomial.legendre.leggauss(24))


def standard_normal_cdf(h: Tensor) -> Tensor:
    return 0.5 * torch.erfc(-h / math.sqrt(2))


def owens_t(h: Tensor, a: float) -> Tensor:
    """Owen's ``T(h, a) = 1/(2 pi) int_0^a exp(-h^2 (1 + x^2) / 2) / (1 + x^2) dx`` (Gauss-Legendre, 24 nodes)."""
    x = (0.5 * a * (_NODES + 1)).to(h)  # [24] on [0, a]
    integrand = torch.exp(-0.5 * h[..., None] ** 2 * (1 + x ** 2)) / (1 + x ** 2)  # [..., 24]
    return (integrand * _WEIGHTS.to(h)).sum(-1) * (0.5 * a) / (2 * math.pi)


def pair_probability(m: Tensor, n: int, copula: str) -> Tensor:
    """``C(m, m)``: the probability that two of the n samples both fall below ``m <= 1/2``."""
    if copula == "dirichlet" or n == 2:
        return (2 * m.pow(1 / (n - 1)) - 1).clamp(min=0).pow(n - 1)
    h = torch.special.ndtri(m)
    return (standard_normal_cdf(h) - 2 * owens_t(h, math.sqrt(n / (n - 2)))).clamp(min=0)


def unit_pattern_probabilities(m: float, n: int, copula: str) -> List[float]:
    """For one unit whose rarer value has probability ``m <= 1/2``: the probability that a given
    set of r of the n samples (r = 0 .. n) take the rarer value and the others do not, by
    inclusion-exclusion over ``J(j)``, the probability that j given samples all do: ``J(1) = m``,
    ``J(j) = max(1 - j (1 - m^(1/(n-1))), 0)^(n-1)`` for the Dirichlet copula (uniform spacings),
    ``J(2) = C(m, m)`` and ``J(3) = 0`` for the Gaussian one (its samples sum to zero), whose law
    of more than three samples has no closed form here."""
    if copula == "gaussian" and n > 3:
        raise ValueError(f"the Gaussian copula's law of {n} samples has no closed form here: use n <= 3 or the "
                         f"Dirichlet copula")
    if copula == "dirichlet":
        spacing = 1 - m ** (1 / (n - 1))
        joint = [max(1 - j * spacing, 0.0) ** (n - 1) for j in range(n + 1)]
    else:
        pair = pair_probability(torch.tensor(m, dtype=torch.float64), n, copula).item()
        joint = [1.0, m, pair, 0.0][:n + 1]
    return [sum(math.comb(n - r, i) * (-1) ** i * joint[r + i] for i in range(n - r + 1)) for r in range(n + 1)]


class CopulaSampler(LatentSampler):
    """Draws every Bernoulli group of a ``[bs * n * iw]``-row pass (data point slowest, then the
    n samples) from n-variate copula uniforms along the samples (module docstring)."""

    def __init__(self, n: int, iw: int, copula: str):
        self.n, self.iw, self.copula = n, iw, copula

    def uniforms(self, shape: torch.Size, p: Tensor) -> Tensor:
        """``[bs, n, ...]`` uniforms, correlated along dim 1, oriented by ``p`` (same shape)."""
        if self.copula == "gaussian":
            e = torch.randn(shape, dtype=p.dtype, device=p.device)
            return standard_normal_cdf((e - e.mean(1, keepdim=True)) * math.sqrt(self.n / (self.n - 1)))
        e = -torch.log(torch.rand(shape, dtype=p.dtype, device=p.device).clamp_(min=UNIFORM_EPS))
        u = (1 - e / e.sum(1, keepdim=True)).pow(self.n - 1)
        return torch.where(p < 0.5, u, 1 - u)

    def __call__(self, group: int, q: Distribution) -> Tensor:
        p = torch.sigmoid(bernoulli_logits(q).detach())  # [rows, N]
        grouped = p.reshape(-1, self.n, self.iw * p.shape[1])  # [bs, n, iw * N]
        return (self.uniforms(grouped.shape, grouped) < grouped).to(p.dtype).view_as(p)


class ARMS(DiscreteLatentEstimator):
    """ARMS with the Dirichlet or Gaussian copula (``copula``; module docstring) over ``mc >= 2``
    samples of one layer of Bernoulli latents."""
    name = "arms"
    latent_types = frozenset({"bernoulli"})
    joint_samples = True
    max_groups = 1
    min_mc = 2

    def __init__(self, mc: int = 2, iw: int = 1, copula: str = "dirichlet", **options):
        if copula not in COPULAS:
            raise ValueError(f"copula {copula!r}; allowed: {list(COPULAS)}")
        super().__init__(mc, iw, **options)
        self.copula = copula

    def check_model(self, model: nn.Module) -> None:
        super().check_model(model)
        if not getattr(model, "accepts_sampler", False):
            self.check_sampler(model, LeafSample(), "draws its samples through a copula")

    def sample(self, model: nn.Module, x: Tensor, options: RuntimeOptions) -> Particles:
        particles = sample_particles(model, x, self.mc, self.iw, False, options, self.log_q,
                                     sampler=CopulaSampler(self.mc, self.iw, self.copula))
        if self.groups is None:
            self.check_groups(latent_groups(particles.output))
        return particles

    def tuple_probabilities(self, p: Tensor, latents: Tensor) -> Tensor:
        """Probability of each tuple of particles under the copula: ``latents [T, mc, iw, N]``
        (binary), ``p [N]`` the units' probabilities (one data point, one layer) -> ``[T]``."""
        probability = latents.new_ones(latents.shape[0])
        for unit, p_unit in enumerate(p.tolist()):
            rare = float(p_unit < 0.5)
            patterns = latents.new_tensor(unit_pattern_probabilities(min(p_unit, 1 - p_unit), self.mc, self.copula))
            probability = probability * patterns[(latents[..., unit] == rare).sum(1)].prod(-1)
        return probability

    def debias(self, p: Tensor) -> Tensor:
        """``p (1 - p) / (m - C(m, m))`` with ``m = min(p, 1 - p)``."""
        m = torch.minimum(p, 1 - p)
        return p * (1 - p) / (m - pair_probability(m, self.mc, self.copula)).clamp(min=torch.finfo(p.dtype).tiny)

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        bound = iw_bound(particles.log_weights(options), options.alpha)  # [bs, mc], with the log q term
        bs, n = bound.shape
        logits = bernoulli_logits(particles.output["qz"][0])  # [rows, N]
        p = torch.sigmoid(logits.detach()).view(bs, n, -1)  # [bs, n, iw * N]
        b = particles.output["z"][0].detach().view(bs, n, -1)  # [bs, n, iw * N]
        with torch.no_grad():
            centred = bound - bound.mean(1, keepdim=True)  # [bs, n]
            debias = self.debias(p[:, :1])  # [bs, 1, iw * N]: q(z|x) is the same for the n samples
            gradient = centred[..., None] * (b - p) * debias / (n - 1)  # [bs, n, iw * N]
        phi_term = (gradient * logits.view(bs, n, -1)).sum((1, 2))  # [bs]
        return -(bound.mean(1) + phi_term), {}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, copula={self.copula}"


FAMILIES = (EstimatorFamily(
    name="arms", grammar="arms | arms-gaussian",
    ids={"arms": (ARMS, {"copula": "dirichlet"}), "arms-gaussian": (ARMS, {"copula": "gaussian"})},
    examples=("arms", "arms-gaussian"), label={"arms": "ARMS", "arms-gaussian": "ARMS (Gaussian copula)"},
    style={"arms": Style("#a50f15", (10, 0)), "arms-gaussian": Style("#ef3b2c", (10, 0, 1))},
    table=(
        (
            "`arms`, `arms-gaussian`",
            ("the `--mc` samples drawn together through a Dirichlet or Gaussian copula (Dimitriev & Zhou 2021), "
             "one layer of Bernoulli latents"),
            "∇ L_K",
        ),
    )),)
