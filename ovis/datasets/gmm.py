"""Data of the Gaussian mixture model of Le et al. 2019, drawn from the true model
(``ovis.models.gmm``: pi*_c proportional to 5 + c, x | c ~ N(10 c, 5^2))."""
import functools
from typing import Optional

import torch
from torch import Tensor

from ..models.gmm import component_means, sample_mixture, true_logits
from .splits import ArrayDataset, SampledDataset

GMM_CLUSTERS = 20
GMM_TRAIN_SIZE = 100_000
GMM_HELD_OUT_SIZE = 100
GMM_HELD_OUT_SEEDS = {"valid": 42, "test": 43}


def _sample_true_gmm(n: int, generator: Optional[torch.Generator] = None, n_clusters: int = GMM_CLUSTERS) -> Tensor:
    return sample_mixture(n, true_logits(n_clusters), generator)


def load_gmm():
    """Train: 100,000 points drawn afresh from the true mixture at every access. Valid / test:
    100 fixed points each (seeds 42 / 43), so that held-out metrics are not re-sampled noise."""
    probs = torch.softmax(true_logits(GMM_CLUSTERS), -1)
    mean = (probs * component_means(GMM_CLUSTERS)).sum().reshape(1)  # [1]
    train = SampledDataset(functools.partial(_sample_true_gmm, n_clusters=GMM_CLUSTERS), GMM_TRAIN_SIZE,
                           mean, (1,))
    held_out = [ArrayDataset(_sample_true_gmm(GMM_HELD_OUT_SIZE, torch.Generator().manual_seed(s)))
                for s in (GMM_HELD_OUT_SEEDS["valid"], GMM_HELD_OUT_SEEDS["test"])]
    return (train, *held_out)
