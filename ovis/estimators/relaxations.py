"""The samplers and relaxations of the estimators that control the noise of each draw (ARM,
DisARM, REBAR, RELAX, the relaxed and straight-through estimators) or replace the draws by their
means (MuProp): latent samplers (``ovis.models.sampling.LatentSampler``) that the estimators hand
to the model, and the transforms of uniform noise behind them.

Each latent unit of a Bernoulli group is drawn from ``u ~ U(0, 1)``: the hard sample is
``b = H(a + logit u)`` (``a`` the logits of q), the Concrete relaxation at temperature ``lam`` is
``sigmoid((a + logit u) / lam)`` (Maddison et al., 2017; Jang et al., 2017). REBAR's conditional
noise (Tucker et al., 2017, appendix): given ``b`` and ``theta = sigmoid(a)``, ``u | b`` is uniform
on ``(1 - theta, 1)`` if ``b = 1`` and on ``(0, 1 - theta)`` if ``b = 0``; with ``v ~ U(0, 1)``::

    u_tilde = b (1 - theta + v theta) + (1 - b) v (1 - theta)

is a draw of ``u | b`` that is differentiable in ``a`` (the conditional reparameterisation). The
REBAR code takes ``u`` itself as that draw: ``v`` is the position of ``u`` in its interval
(``interval_position``), so ``u_tilde`` equals ``u`` in value and keeps the conditional gradient.
The REBAR code's relaxation (``muprop_relaxation``) adds ``a lam / (lam + 1)`` to the Concrete's
logit: ``sigmoid((a + logit u) / lam + a lam / (lam + 1))``; it also tends to ``b`` as lam -> 0.
Hierarchical q: the model computes each group's ``q`` from what the sampler returned for its
parents, so a relaxed pass relaxes every group and the relaxation is a differentiable function
of the noise of all groups.
"""
from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Bernoulli, Distribution, Independent, constraints

from ..models.sampling import LatentSampler

# Uniform noise is kept inside [EPS, 1 - EPS] so that logit(u) stays finite in float32.
UNIFORM_EPS = 1e-6

Noise = Dict[int, Tensor]  # latent group -> uniforms [rows, N_g]
RELAXATIONS = ("concrete", "muprop")  # the Concrete; the REBAR code's muprop_relaxation (module docstring)


def bernoulli_logits(q: Distribution) -> Tensor:
    """The logits of a Bernoulli q (plain or wrapped in ``Independent``), or a clear error."""
    base = q.base_dist if isinstance(q, Independent) else q
    if not isinstance(base, Bernoulli):
        raise ValueError(f"this sampler needs Bernoulli latents, got {type(base).__name__}; estimators "
                         f"that control the noise of each draw (ARM, DisARM, REBAR, RELAX) apply to "
                         f"binary latents: use a model with prior='bernoulli' (e.g. --model sbm)")
    return base.logits


def logistic_noise(u: Tensor) -> Tensor:
    """``logit(u) = log u - log(1 - u)``: uniform noise mapped to a standard logistic variable."""
    return torch.log(u) - torch.log1p(-u)


def hard_bernoulli(logits: Tensor, u: Tensor) -> Tensor:
    """The exact Bernoulli draw ``H(logits + logit(u)) = 1[u > sigmoid(-logits)]``, no gradient.

    Written with the complement so that ``u`` and ``1 - u`` give the antithetic pair of ARM."""
    return (logits + logistic_noise(u) > 0).to(logits.dtype)


def relaxed_bernoulli(logits: Tensor, u: Tensor, tau: float) -> Tensor:
    """The Concrete relaxation ``sigmoid((logits + logit(u)) / tau)`` of ``hard_bernoulli``."""
    return torch.sigmoid((logits + logistic_noise(u)) / tau)


class MeanField(LatentSampler):
    """The mean-field pass of MuProp (Gu et al., 2016): each group is replaced by the mean of its
    q given the means of the groups drawn before it, returned as a new leaf that requires grad
    (kept in ``values[group]``), so that the derivative of any function of the pass with respect
    to each group's value is available. Log-densities are evaluated at these relaxed values."""
    draws = False

    def __init__(self):
        self.values: Dict[int, Tensor] = {}

    def __call__(self, group: int, q: Distribution) -> Tensor:
        support = (q.base_dist if isinstance(q, Independent) else q).support
        if support.is_discrete and support is not constraints.boolean and support is not constraints.one_hot:
            raise ValueError(f"the mean-field pass (MuProp) needs latents whose mean the model can take in place "
                             f"of a sample (Bernoulli, one-hot categorical, continuous), got "
                             f"{type(q).__name__} with values in {support}: use another estimator "
                             f"(e.g. ovis-gamma1, vimco-arithmetic, reinforce-loo) or a model with binary or "
                             f"one-hot latents (e.g. --model sbm)")
        self.values[group] = q.mean.detach().requires_grad_()
        return self.values[group]


class NoiseSampler(LatentSampler):
    """Draws each group from uniform noise ``u ~ U(0, 1)`` that it keeps in ``noise[group]``
    (the shape of one sample of ``q``), so that several passes can reuse the same noise, or a
    transform of it (pass ``noise=`` from an earlier sampler: ``{g: 1 - u}`` gives ARM's
    antithetic draw). Subclasses map ``(q, u)`` to a latent in ``transform``; this class draws the
    exact Bernoulli sample ``hard_bernoulli`` (so it samples q exactly, without gradient)."""

    def __init__(self, noise: Optional[Dict[int, Tensor]] = None, generator: Optional[torch.Generator] = None):
        self.noise: Dict[int, Tensor] = dict(noise or {})
        self.generator = generator

    def uniform(self, group: int, q: Distribution) -> Tensor:
        if group not in self.noise:
            logits = bernoulli_logits(q)
            # rand_like without a generator: torch.compile traces it at a symbolic batch size
            u = (torch.rand_like(logits, requires_grad=False) if self.generator is None else
                 torch.rand(logits.shape, dtype=logits.dtype, device=logits.device, generator=self.generator))
            self.noise[group] = u.clamp_(UNIFORM_EPS, 1 - UNIFORM_EPS)
        return self.noise[group]

    def transform(self, group: int, q: Distribution, u: Tensor) -> Tensor:
        return hard_bernoulli(bernoulli_logits(q).detach(), u)

    def __call__(self, group: int, q: Distribution) -> Tensor:
        return self.transform(group, q, self.uniform(group, q))


def conditional_uniform(v: Tensor, b: Tensor, logits: Tensor) -> Tensor:
    """REBAR's ``u_tilde ~ u | b`` from ``v ~ U(0, 1)`` (module docstring); differentiable in ``logits``."""
    theta = torch.sigmoid(logits)
    u = torch.where(b > 0.5, 1 - theta + v * theta, v * (1 - theta))
    return u.clamp(UNIFORM_EPS, 1 - UNIFORM_EPS)


def interval_position(u: Tensor, b: Tensor, logits: Tensor) -> Tensor:
    """The ``v`` for which ``conditional_uniform(v, b, logits)`` is ``u`` (no gradient): where ``u``
    lies in its interval ``(1 - theta, 1)`` (b = 1) or ``(0, 1 - theta)`` (b = 0)."""
    theta = torch.sigmoid(logits.detach())
    v = torch.where(b > 0.5, (u - 1 + theta) / theta, u / (1 - theta))
    return v.clamp(0, 1)


class RelaxedSampler(NoiseSampler):
    """The Concrete relaxation ``sigmoid((a + logit u) / temperature)`` of each Bernoulli group,
    differentiable in the logits ``a``. With ``straight_through`` the value is the hard sample
    ``H(a + logit u)`` and the gradient that of the relaxation (straight-through Gumbel).
    Categorical groups (``q.logits [.., C]``) get the Gumbel-softmax sample instead (fresh noise).
    ``relaxation="muprop"``: the REBAR code's relaxation (module docstring) instead of the Concrete."""

    def __init__(self, temperature: float, noise: Optional[Noise] = None, straight_through: bool = False,
                 relaxation: str = "concrete"):
        super().__init__(noise)
        self.temperature, self.straight_through = temperature, straight_through  # a tensor keeps its graph
        self.relaxation = relaxation

    def __call__(self, group: int, q: Distribution) -> Tensor:
        if q.event_shape:  # one-hot categorical
            return F.gumbel_softmax(q.logits, tau=float(self.temperature), hard=self.straight_through, dim=-1)
        return self.transform(group, q, self.uniform(group, q))

    def transform(self, group: int, q: Distribution, u: Tensor) -> Tensor:
        logits = bernoulli_logits(q)
        if self.relaxation == "muprop":
            lam = self.temperature
            relaxed = torch.sigmoid((logits + logistic_noise(u)) / lam + logits * (lam / (lam + 1)))
        else:
            relaxed = relaxed_bernoulli(logits, u, self.temperature)
        if not self.straight_through:
            return relaxed
        return hard_bernoulli(logits.detach(), u) + (relaxed - relaxed.detach())


class PartlyRelaxedSampler(RelaxedSampler):
    """``RelaxedSampler`` whose row r draws its first ``hard_draws[r]`` groups hard
    (``H(a + logit u)``, no gradient) and relaxes the later ones (the REBAR code's per-layer control
    variates). ``order``: the groups in the order drawn."""

    def __init__(self, temperature: float, noise: Noise, hard_draws: Tensor, relaxation: str = "concrete"):
        super().__init__(temperature, noise, relaxation=relaxation)
        self.hard_draws, self.order = hard_draws, []  # [rows]

    def transform(self, group: int, q: Distribution, u: Tensor) -> Tensor:
        relaxed = super().transform(group, q, u)  # [rows, N_g]
        hard = (self.hard_draws > len(self.order)).unsqueeze(-1)  # [rows, 1]
        self.order.append(group)
        return torch.where(hard, hard_bernoulli(bernoulli_logits(q).detach(), u), relaxed)
