"""Thermodynamic variational objective (Masrani, Le & Wood, 2019), covariance gradient estimator.

The TVO integrates ``E_{pi_beta}[log w]`` over ``beta`` in [0, 1], where
``pi_beta(z) ~ q(z|x)^(1 - beta) p(x, z)^beta``, with a Riemann sum over a partition
``0 = beta_0 < beta_1 < ... < beta_n = 1``; the left sum is a lower bound of log p(x).
"""
import math
import re
from typing import Dict, Optional, Tuple

import torch
from torch import Tensor, nn

from .base import GradientEstimator

from .particles import Particles, RuntimeOptions
from .registry import EstimatorFamily, EstimatorId, Parsed, Style, invalid

INTEGRATIONS = ("left", "right", "trapz")
BETA_MIN_RULES = ("config1", "config2")


def tvo_partition(partitions: int, log_beta_min: float) -> Tensor:
    """``[n + 1]`` points: ``[0, 1]`` for n = 1, else 0 followed by n points log-spaced from
    ``10^log_beta_min`` to 1 (e.g. n = 5, log_beta_min = -2: 0, .01, .0316, .1, .3162, 1)."""
    if partitions < 1:
        raise ValueError(f"the TVO needs at least one partition, got {partitions}")
    if partitions == 1:
        return torch.tensor([0.0, 1.0], dtype=torch.float64)
    if not log_beta_min < 0:
        raise ValueError(f"log10(beta_min)={log_beta_min} must be < 0 (beta_min in (0, 1))")
    return torch.cat([torch.zeros(1, dtype=torch.float64),
                      torch.logspace(log_beta_min, 0.0, partitions, dtype=torch.float64)])


def k_dependent_beta_min(rule: str, iw: int) -> float:
    """K-dependent smallest positive partition point of the TVO paper: ``config1`` (its figure 3):
    0.05 / 0.2 / 0.3 for K < 10 / < 30 / >= 30; ``config2`` (figure 6): 0.01 / 0.02 / 0.03."""
    values = {"config1": (0.05, 0.2, 0.3), "config2": (0.01, 0.02, 0.03)}
    if rule not in values:
        raise ValueError(f"beta_min rule {rule!r}; allowed: {list(BETA_MIN_RULES)}")
    small, medium, large = values[rule]
    return small if iw < 10 else medium if iw < 30 else large


def integration_weights(partition: Tensor, integration: str) -> Tensor:
    """Riemann-sum weights ``m_j`` of each partition point ``[n + 1]``."""
    widths = partition[1:] - partition[:-1]  # [n]
    zero = partition.new_zeros(1)
    if integration == "left":
        return torch.cat([widths, zero])
    if integration == "right":
        return torch.cat([zero, widths])
    if integration == "trapz":
        return (torch.cat([widths, zero]) + torch.cat([zero, widths])) / 2
    raise ValueError(f"TVO integration {integration!r}; allowed: {list(INTEGRATIONS)}")


def _expectation(pi: Tensor, values: Tensor) -> Tensor:
    """``sum_k pi_k values_k`` where particles of probability 0 contribute 0 (even if -inf)."""
    return torch.where(pi > 0, pi * values, torch.zeros_like(values)).sum(-1)


class ThermodynamicVariationalObjective(GradientEstimator):
    """TVO with the covariance gradient estimator (Masrani et al., 2019, eq. 15).

    Per data point and mc sample, with ``f_k = l_k`` (the log-weight, alpha/beta included),
    ``t_jk = beta_j log p(x, z_k) + (1 - beta_j) log q(z_k|x)`` and the self-normalised
    ``pi_jk = softmax_k(beta_j l_k)`` (constant)::

        E_j = sum_k pi_jk l_k                                      (gradient through l)
        C_j = K/(K-1) sum_k pi_jk sg(l_k - E_j) t_jk               (gradient through t; K/(K-1) -> 1 at K = 1)
        J   = - sum_j m_j (C_j + E_j)

    (centring ``t`` as well changes neither the value nor the gradient, since
    ``sum_k pi_jk (l_k - E_j) = 0``). ``C_j`` is the covariance term of
    ``d/dlambda E_pi[f] = E_pi[df] + Cov_pi(f, d log pi~)``. Biased by design: a self-normalised
    estimator of the gradient of the TVO objective (consistent as K grows), not of L_K; with the
    single partition [0, 1] and left integration it is an unbiased gradient of the ELBO.

    Args: ``partitions`` n; ``log_beta_min`` (log10 of the smallest positive point);
    ``beta_min_rule`` (config1 / config2: K-dependent beta_min, overrides ``log_beta_min``);
    ``integration`` in {left, right, trapz}.
    Diagnostics: ``tvo/bound`` (the Riemann sum of E_j, per data point) and the partition
    ``tvo/beta_<j>``.
    """

    def __init__(self, mc: int = 1, iw: int = 1, partitions: int = 2, log_beta_min: float = -10.0,
                 beta_min_rule: Optional[str] = None, integration: str = "left", **options):
        super().__init__(mc, iw, **options)
        if beta_min_rule is not None:
            log_beta_min = math.log10(k_dependent_beta_min(beta_min_rule, self.iw))
        partition = tvo_partition(int(partitions), float(log_beta_min))
        self.register_buffer("partition", partition, persistent=False)  # [n + 1], float64
        self.register_buffer("weights", integration_weights(partition, integration), persistent=False)  # [n + 1]
        self.integration = integration
        self.unbiased_for = "∇ ELBO" if len(partition) == 2 and integration == "left" else "biased"

    def surrogate(self, model: nn.Module, x: Tensor, particles: Particles,
                  options: RuntimeOptions) -> Tuple[Tensor, Dict[str, Tensor]]:
        K = particles.iw
        log_weights = particles.log_weights(options)  # [bs, mc, K], gradient through log p and log q
        log_joint = particles.log_px + particles.log_pz.sum(-1)  # [bs, mc, K]
        log_q = particles.log_qz.sum(-1)  # [bs, mc, K]
        betas = self.partition.to(log_weights)  # [J], dtype and device of the particles
        fixed = log_weights.detach().unsqueeze(-2)  # [bs, mc, 1, K]
        tempered = torch.nan_to_num(betas.unsqueeze(-1) * fixed, nan=0.0, posinf=math.inf, neginf=-math.inf)  # 0 * -inf = 0
        pi = torch.softmax(tempered, dim=-1)  # [bs, mc, J, K]
        expectation = _expectation(pi, log_weights.unsqueeze(-2))  # E_j  [bs, mc, J]
        centred = fixed - expectation.detach().unsqueeze(-1)  # [bs, mc, J, K]
        t = betas.unsqueeze(-1) * log_joint.unsqueeze(-2) + (1 - betas).unsqueeze(-1) * log_q.unsqueeze(-2)
        covariance = _expectation(pi, centred * t) * (K / (K - 1) if K > 1 else 1.0)  # C_j  [bs, mc, J]
        # a -inf E_j (a particle with p(x|z) = 0 at beta_j = 0) makes the objective -inf: no covariance term
        covariance = torch.where(torch.isfinite(expectation), covariance, torch.zeros_like(covariance))
        weights = self.weights.to(log_weights)  # [J]
        loss = -((covariance + expectation) * weights).sum(-1).mean(1)  # [bs]
        diagnostics = {"tvo/bound": (expectation.detach() * weights).sum(-1).mean(1)}
        diagnostics.update({f"tvo/beta_{j}": beta for j, beta in enumerate(self.partition)})
        return loss, diagnostics

    def extra_repr(self) -> str:
        points = ", ".join(f"{b:.4g}" for b in self.partition.tolist())
        return f"{super().extra_repr()}, partition=[{points}], integration={self.integration}"


def _original_tvo_tokens(tokens, config: Dict) -> int:
    """The original code's reading of a TVO id: substring tests, first integer, unknown tokens ignored."""
    beta = 10
    for token in tokens:
        number = re.search(r"\d+", token)
        if "part" in token and number:
            config["partitions"] = int(number.group())
        elif "beta" in token and number:
            beta = int(number.group())
        elif token in BETA_MIN_RULES:
            config["beta_min_rule"] = token
    config["integration"] = next((t for t in tokens if t in INTEGRATIONS), "left")
    return beta


def _tvo_config(estimator_id: str, tokens, reproduce_original: bool) -> Tuple[Dict, int]:
    """The TVO's config and the ``beta<b>`` number b (beta_min = 10^-b)."""
    config = {"partitions": 2, "log_beta_min": -10.0, "beta_min_rule": None, "integration": "left"}
    if reproduce_original:
        beta = _original_tvo_tokens(tokens, config)
        config["log_beta_min"] = -float(beta)
        return config, beta
    beta, seen = 10, set()
    for token in tokens:
        match = re.fullmatch(r"(part|beta)(\d+)", token)
        kind = (match.group(1) if match else "integration" if token in INTEGRATIONS
                else "beta_min_rule" if token in BETA_MIN_RULES else None)
        if kind is None:
            raise invalid(estimator_id, f"unknown tvo token {token!r}: expected part<n>, beta<b>, config1, "
                                        f"config2, left, right or trapz (the original code ignored unknown "
                                        f"tokens: reproduce_original=True does the same)")
        if kind in seen:
            raise invalid(estimator_id, f"more than one {kind} token")
        seen.add(kind)
        if kind == "part":
            config["partitions"] = int(match.group(2))
        elif kind == "beta":
            beta = int(match.group(2))
        else:
            config[kind] = token
    config["log_beta_min"] = -float(beta)
    return config, beta


def parse_tvo_id(estimator_id: str, reproduce_original: bool) -> Parsed:
    """``tvo[-part<n>][-beta<b>][-config1|-config2][-left|-right|-trapz]``."""
    config, beta = _tvo_config(estimator_id, estimator_id.split("-")[1:], reproduce_original)
    parts = config["partitions"]
    if parts < 1:
        raise invalid(estimator_id, "the TVO needs at least one partition")
    words = [w for w in (config["beta_min_rule"], config["integration"]) if w not in (None, "left")]
    family = "-".join(["tvo"] + words)
    details = ([f"{parts} part."] if parts != 2 else []) + ([f"beta_min=1e-{beta}"] if beta != 10 else []) + words
    key = "-".join(["tvo"] + ([f"part{parts}"] if parts != 2 else []) + ([f"beta{beta}"] if beta != 10 else [])
                   + words)
    label = "TVO" + (f" ({', '.join(details)})" if details else "")
    return (ThermodynamicVariationalObjective, config,
            EstimatorId(estimator_id, family, (("part", parts), ("beta", beta)), label, key))


def tvo_style(description: EstimatorId) -> Style:
    """Blue, darker with more partitions."""
    parts = description.parameter("part")
    return Style("#2166ac", (2, 0, 0, parts), shade=min(0.08 * (parts - 2), 0.4) if parts >= 2 else -0.2)


FAMILIES = (EstimatorFamily(
    name="tvo", grammar="tvo[-part<n>][-beta<b>][-config1|-config2][-left|-right|-trapz]", parse=parse_tvo_id,
    prefixes=("tvo",), label="TVO", style=tvo_style,
    examples=("tvo", "tvo-part1", "tvo-part5-beta2-trapz", "tvo-part2-config1"),
    table=(
        (
            "`tvo-part<n>-beta<b>[-config1\\|-config2][-left\\|-right\\|-trapz]`",
            "thermodynamic variational objective (Masrani et al. 2019)",
            "the TVO bound",
        ),
    )),)
