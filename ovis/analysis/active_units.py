"""Active units of a latent variable model (Burda et al., 2016, "Importance Weighted
Autoencoders", section 5.2; SPEC 5.7).

A latent unit ``d`` is active when its posterior mean moves with the data:
``A_d = Cov_x( E_{q(z|x)}[z_d] ) > threshold``. ``E_q[z_d | x]`` is a Monte-Carlo mean over
``mc`` samples of q; all latent layers are flattened and concatenated, so a 3 x 200 SBN has
600 units and a categorical layer of N variables with K classes has N * K.
"""
from dataclasses import dataclass
from typing import Dict, Iterable

import torch
from torch import Tensor, nn

# Burda et al. use 1e-2; the original OVIS code used 1e-3 (SPEC 11.19): pass it to compare.
BURDA_THRESHOLD = 1e-2
ORIGINAL_THRESHOLD = 1e-3
# Rows of one forward pass (data points x MC samples); bounds the memory of the analysis.
DEFAULT_MAX_ROWS = 16384


@dataclass
class ActiveUnits:
    """``au`` active units out of ``n``; ``variances``: ``Cov_x(E_q[z_d|x])`` per unit ``[n]``."""
    au: int
    n: int
    threshold: float
    variances: Tensor

    @property
    def r_au(self) -> float:
        return self.au / self.n

    @property
    def summary(self) -> Dict[str, float]:
        """The logged metrics ``active_units/{au, r_au, n}``."""
        return {"active_units/au": float(self.au), "active_units/r_au": self.r_au, "active_units/n": float(self.n)}


@torch.no_grad()
def posterior_means(model: nn.Module, x: Tensor, mc: int, max_rows: int = DEFAULT_MAX_ROWS) -> Tensor:
    """Monte-Carlo estimate of ``E_q[z|x]`` for every point of ``x`` ``[bs, *x_shape]``: ``[bs, units]``.

    The ``mc`` copies of a point are processed in chunks of at most ``max_rows`` rows."""
    per_pass = max(1, max_rows // mc)  # data points per forward pass
    means = []
    for points in torch.split(x, per_pass):  # [p, *x_shape]
        total = None
        for copies in _chunk_sizes(mc, max_rows):
            rows = points.repeat_interleave(copies, dim=0)  # [p * copies, *x_shape]
            z = model(rows, reparam=False)["z"]
            flat = torch.cat([layer.reshape(rows.shape[0], -1).double() for layer in z], dim=1)  # [p*c, units]
            summed = flat.view(points.shape[0], copies, -1).sum(1)  # [p, units]
            total = summed if total is None else total + summed
        means.append(total / mc)
    return torch.cat(means)  # [bs, units]


def _chunk_sizes(total: int, chunk: int):
    while total > 0:
        size = min(total, chunk)
        yield size
        total -= size


def active_units(model: nn.Module, x_batches: Iterable[Tensor], mc: int, npoints: int,
                 threshold: float = BURDA_THRESHOLD, max_rows: int = DEFAULT_MAX_ROWS) -> ActiveUnits:
    """Count the active units over the first ``npoints`` data points of ``x_batches``.

    Args:
        model: a TemplateModel; ``forward(x)["z"]`` lists the latent layers ``[rows, ...]``.
        x_batches: iterable of data batches ``[b, *x_shape]`` on the model's device.
        mc: Monte-Carlo samples of q(z|x) per point.
        npoints: data points (>= 2); batches are consumed until that many are collected.
        threshold: a unit is active when its variance over data points exceeds it.
        max_rows: rows per forward pass.
    """
    if mc < 1 or npoints < 2:
        raise ValueError(f"active units need mc >= 1 and npoints >= 2, got mc={mc}, npoints={npoints}")
    means, collected = [], 0
    for x in x_batches:
        x = x[: npoints - collected]
        means.append(posterior_means(model, x, mc, max_rows))
        collected += x.shape[0]
        if collected >= npoints:
            break
    if collected < 2:
        raise ValueError(f"active units need at least 2 data points, the batches held {collected}")
    variances = torch.cat(means).var(0, unbiased=True)  # [units]
    return ActiveUnits(au=int((variances > threshold).sum()), n=variances.numel(), threshold=threshold,
                       variances=variances)
