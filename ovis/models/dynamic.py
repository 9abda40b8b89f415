"""A model whose latent structure differs per data point: a geometric number of Bernoulli draws.

Generative model (one observation per data point x, a count):

    draw b_j ~ Bernoulli(s), s = sigmoid(success_logit), j = 0, 1, ... until the first success;
    the latent is the draw sequence, n = (number of draws) - 1 failures  (p(n) = (1 - s)^n s);
    observe o = 1 with p(o = 1 | n, x) = 1 - eps if n == x else eps.

Inference network: the same kind of draw sequence with a logit that depends on the step j and on
x, ``offset + slope * (j - x)``: with ``slope > 0`` q stops near ``j = x``.

The number of draws is random, so sampling cannot be vectorised across the batch or the
particles: it loops over the rows (one Python loop per row, the structure demands it). The
log-densities of the drawn sequences are then one masked sum over the zero-padded draws. Both follow the black-box interface of ``ovis.estimators.blackbox``
(``inf_net(x).sample()`` / ``.log_prob(z)``, ``gen_model(x, z).log_prob(x, z)``); ``z`` is a list
of 1-D draw sequences, one per row. ``exact_log_marginal(x)`` gives ``log p(o = 1; x) =
log(eps + (1 - 2 eps) s (1 - s)^x)`` (the target of every bound).
"""
import math
from contextlib import contextmanager
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.functional import logsigmoid
from torch.nn.utils.rnn import pad_sequence

MAX_DRAWS = 10_000
UNIFORM_CHUNK = 16  # uniforms drawn per torch call while sampling one row


def _padded(z: List[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    """Draw sequences of different lengths as ``draws``, ``mask [rows, J]`` (zero-padded) and
    the step index ``j [J]``: the log-densities of all rows are then one vectorised sum."""
    draws = pad_sequence(z, batch_first=True)  # [rows, J]
    lengths = torch.tensor([len(d) for d in z], device=draws.device)  # [rows]
    steps = torch.arange(draws.shape[1], device=draws.device)  # [J]
    return draws, (steps < lengths.unsqueeze(1)).to(draws.dtype), steps.to(draws.dtype)


def _sequence_log_prob(logits: Tensor, draws: Tensor, mask: Tensor) -> Tensor:
    """``sum_j mask_j log Bernoulli(draws_j; sigmoid(logits_j))``: ``[rows, J] -> [rows]``."""
    return (mask * (draws * logsigmoid(logits) + (1 - draws) * logsigmoid(-logits))).sum(-1)


def _check_counts(x: Tensor) -> Tensor:
    if x.dim() == 2 and x.shape[1] == 1:
        x = x[:, 0]
    if x.dim() != 1 or (x < 0).any() or (x != x.round()).any():
        raise ValueError(f"the geometric model observes counts: expected x [rows] or [rows, 1] of integers >= 0, "
                         f"got shape {tuple(x.shape)}")
    return x


class GeometricInference(nn.Module):
    """q(draws | x): Bernoulli draws with logit ``offset + slope * (j - x)`` until the first success.

    ``fixed_draws(z)``: inside the context, ``sample()`` returns ``z`` (tests: the same draws
    for a batch and for its data points one at a time).
    """

    def __init__(self, offset: float = 0.0, slope: float = 0.0):
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(float(offset)))
        self.slope = nn.Parameter(torch.tensor(float(slope)))
        self.x: Optional[Tensor] = None
        self._fixed: Optional[List[Tensor]] = None

    def forward(self, x: Tensor) -> "GeometricInference":
        self.x = _check_counts(x)  # [rows]
        return self

    @property
    def params_(self) -> Dict[str, float]:
        return {"offset": self.offset.item(), "slope": self.slope.item()}

    @contextmanager
    def fixed_draws(self, z: List[Tensor]):
        self._fixed = list(z)
        try:
            yield
        finally:
            self._fixed = None

    @torch.no_grad()
    def sample(self) -> List[Tensor]:
        if self._fixed is not None:
            if len(self._fixed) != len(self.x):
                raise ValueError(f"{len(self._fixed)} fixed draw sequences for {len(self.x)} rows")
            return self._fixed
        offset, slope = self.offset.item(), self.slope.item()
        z = []
        for x_row in self.x.tolist():  # per row: the number of draws is random
            draws, uniforms = [], []
            while not draws or draws[-1] == 0.0:
                if len(draws) == MAX_DRAWS:
                    raise RuntimeError(f"q drew {MAX_DRAWS} failures in a row (offset={offset:.3g}, "
                                       f"slope={slope:.3g}): its success probability has collapsed")
                if not uniforms:
                    uniforms = torch.rand(UNIFORM_CHUNK, dtype=torch.float64).tolist()[::-1]
                logit = offset + slope * (len(draws) - x_row)
                draws.append(float(uniforms.pop() < 1 / (1 + math.exp(-logit))))
            z.append(torch.tensor(draws, dtype=self.offset.dtype, device=self.offset.device))
        return z

    def log_prob(self, z: List[Tensor]) -> Tensor:
        """``log q(draws | x)`` per row, ``[rows]``."""
        draws, mask, steps = _padded(z)  # [rows, J] x 2, [J]
        logits = self.offset + self.slope * (steps - self.x.unsqueeze(1))  # [rows, J]
        return _sequence_log_prob(logits, draws, mask)  # [rows]


class GeometricGenerative(nn.Module):
    """p(draws) p(o = 1 | n, x): Bernoulli(sigmoid(success_logit)) draws until the first success,
    then the noisy observation that the number of failures n equals x (``noise`` = eps)."""

    def __init__(self, success_logit: float = 0.0, noise: float = 0.05):
        super().__init__()
        if not 0.0 < noise < 0.5:
            raise ValueError(f"noise={noise!r}: the observation noise must be in (0, 0.5)")
        self.success_logit = nn.Parameter(torch.tensor(float(success_logit)))
        self.noise = float(noise)

    def forward(self, x: Tensor, z: List[Tensor]) -> "GeometricGenerative":
        return self

    @property
    def params_(self) -> Dict[str, float]:
        return {"success_prob": torch.sigmoid(self.success_logit).item()}

    def log_prob(self, x: Tensor, z: List[Tensor]) -> Tensor:
        """``log p(draws) + log p(o = 1 | n, x)`` per row, ``[rows]``."""
        x = _check_counts(x)
        draws, mask, _ = _padded(z)  # [rows, J] x 2
        failures = mask.sum(-1) - 1  # [rows]
        log_observation = torch.where(failures == x, math.log(1 - self.noise), math.log(self.noise))  # [rows]
        return _sequence_log_prob(self.success_logit.expand_as(draws), draws, mask) + log_observation

    def exact_log_marginal(self, x: Tensor) -> Tensor:
        """``log p(o = 1; x) = log(eps + (1 - 2 eps) s (1 - s)^x)``, ``[bs]``."""
        x = _check_counts(x)
        log_geometric = logsigmoid(self.success_logit) + x * logsigmoid(-self.success_logit)  # [bs]
        return torch.logaddexp(torch.full_like(log_geometric, math.log(self.noise)),
                               math.log(1 - 2 * self.noise) + log_geometric)
