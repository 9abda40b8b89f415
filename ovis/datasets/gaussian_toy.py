"""Data of the linear Gaussian toy model (Rainforth et al. 2018).

The data seed (42) is fixed, independent of the run's ``--seed``: every run sees the same
points, as in the original code (whose values these match).
"""
from typing import Tuple

import torch
from torch import Tensor

from .splits import ArrayDataset

GAUSSIAN_TOY_SEED = 42
GAUSSIAN_TOY_POINTS = 1024
GAUSSIAN_TOY_DIM = 20


def _draw(n_points: int, D: int, seed: int) -> Tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    mu_true = torch.randn(D, generator=generator)  # [D]
    generator.manual_seed(seed)  # the original re-seeds: the first z noise repeats mu_true's draw
    z = mu_true + torch.randn(n_points, D, generator=generator)  # [n, D]
    x = z + torch.randn(n_points, D, generator=generator)  # [n, D]
    return x, mu_true


def sample_toy_data(n_points: int = GAUSSIAN_TOY_POINTS, D: int = GAUSSIAN_TOY_DIM,
                    seed: int = GAUSSIAN_TOY_SEED) -> Tensor:
    """``x [n_points, D]``: mu_true ~ N(0, I), then z ~ N(mu_true, I) and x ~ N(z, I) per point
    (seed 42: mu_true[:4] = [1.9269, 1.4873, 0.9007, -2.1055])."""
    return _draw(n_points, D, seed)[0]


def toy_true_mean(D: int = GAUSSIAN_TOY_DIM, seed: int = GAUSSIAN_TOY_SEED) -> Tensor:
    """The prior mean mu_true ``[D]`` that generated ``sample_toy_data(..., D, seed)``."""
    return _draw(0, D, seed)[1]


def load_gaussian_toy():
    """One fixed set of 1,024 points of dimension 20 serves as train, valid and test: the
    experiments study gradients on the data themselves, not generalisation."""
    split = ArrayDataset(sample_toy_data())
    return split, split, split
