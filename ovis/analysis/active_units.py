"""Active units of a latent variable model (Burda et al., 2016, "Importance Weighted
Autoencoders", section 5.2).

A latent unit ``d`` is active when its posterior mean moves with the data:
``A_d = Cov_x( E_{q(z|x)}[z_d] ) > threshold``. ``E_q[z_d | x]`` is a Monte-Carlo mean over
``mc`` samples of q; all latent layers are flattened and concatenated, so a 3 x 200 SBN has
600 units and a categorical layer of N variables with K classes has N * K.
"""
from dataclasses import dataclass
from typing import Dict, Iterable

import torch
from torch import Tensor, nn

# Burda et al. use 1e-2; the original OVIS code used 1e-3: pass it to compare.
BURDA_THRESHOLD = 1e-2
ORIGINAL_THRESHOLD = 1e-3
# Rows of one forward pass (data points x MC samples): the memory of the analysis is that of one
# forward pass of this many rows, whatever mc and npoints.
DEFAULT_MAX_ROWS = 1024


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

    Forward passes have at most ``max_rows`` rows: ``max_rows // mc`` points with all their
    copies, or, when ``mc > max_rows``, one point with ``max_rows`` copies at a time; only the
    running sum of the samples of each point is kept."""
    points_per_pass = max(1, max_rows // mc)
    means = []
    for points in torch.split(x, points_per_pass):  # [p, *x_shape]
        total = None  # [p, units], float64
        for copies in _chunk_sizes(mc, max_rows):
            rows = points.repeat_interleave(copies, dim=0)  # [p * copies, *x_shape]
            z = model(rows, reparam=False)["z"]
            summed = torch.cat([layer.reshape(points.shape[0], copies, -1).sum(1, dtype=torch.float64)
                                for layer in z], dim=1)  # [p, units]
            total = summed if total is None else total.add_(summed)
        means.append(total.div_(mc))
    return torch.cat(means)  # [bs, units]


def _chunk_sizes(total: int, chunk: int):
    while total > 0:
        size = min(total, chunk)
        yield size
        total -= size


class RunningVariance:
    """Mean and unbiased variance per column of rows added batch by batch (Chan, Golub &
    LeVeque, 1983, pairwise update), in float64: memory ``[columns]``, not ``[rows, columns]``."""

    def __init__(self):
        self.count = 0
        self.mean = self.squares = None  # [columns]: mean, sum of squared deviations

    def add(self, rows: Tensor) -> None:
        """``rows [n, columns]``."""
        rows = rows.double()
        n = rows.shape[0]
        batch_mean = rows.mean(0)  # [columns]
        batch_squares = (rows - batch_mean).square_().sum(0)  # [columns]
        if self.count == 0:
            self.mean, self.squares = batch_mean, batch_squares
        else:
            delta = batch_mean.sub_(self.mean)  # [columns]
            total = self.count + n
            self.mean.add_(delta, alpha=n / total)
            self.squares.add_(batch_squares).add_(delta.square_(), alpha=self.count * n / total)
        self.count += n

    @property
    def variance(self) -> Tensor:
        if self.count < 2:
            raise ValueError(f"a variance needs at least 2 rows, got {self.count}")
        return self.squares / (self.count - 1)


def active_units(model: nn.Module, x_batches: Iterable[Tensor], mc: int, npoints: int,
                 threshold: float = BURDA_THRESHOLD, max_rows: int = DEFAULT_MAX_ROWS) -> ActiveUnits:
    """Count the active units over the first ``npoints`` data points of ``x_batches``.

    Points are streamed: memory is one forward pass of at most ``max_rows`` rows plus ``[units]``
    running moments, whatever ``mc`` and ``npoints``.

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
    moments = RunningVariance()
    for x in x_batches:
        x = x[: npoints - moments.count]
        moments.add(posterior_means(model, x, mc, max_rows))
        if moments.count >= npoints:
            break
    if moments.count < 2:
        raise ValueError(f"active units need at least 2 data points, the batches held {moments.count}")
    variances = moments.variance  # [units]
    return ActiveUnits(au=int((variances > threshold).sum()), n=variances.numel(), threshold=threshold,
                       variances=variances)
