"""Data sets of the paper, loaded offline and cached.

    datasets = get_datasets("binmnist", data_root="../shared/data")
    x = datasets.train.batch(torch.arange(24))          # float32 [24, 1, 28, 28] in {0, 1}
    x_mean = datasets.train.mean()                      # float32 [1, 28, 28]

==================  ====================  ===================  ==============================
name                x_shape               train/valid/test     values
==================  ====================  ===================  ==============================
``binmnist``        (1, 28, 28)           50,000/10,000/10,000 static binarisation (Larochelle)
``fashion``         (1, 28, 28)           50,000/10,000/10,000 threshold 0.5, or dynamic
``omniglot``        (1, 28, 28)           23,000/1,345/8,070   dynamic (default) or threshold
                                          (chardata.mat) or
                                          3,388/242/1,210
                                          (the two small zips)
``gmm``             (1,)                  100,000/100/100      train drawn afresh every access
``gaussian-toy``    (20,)                 1,024 (same points)  real
``shapes``          (3, 16, 16)           940/118/118          binary per channel
==================  ====================  ===================  ==============================

Files are looked up in ``data_root``, else ``$OVIS_DATA``, then ``./data`` (details and
validation splits: ``ovis.datasets.images``; generated sets: ``gaussian_toy``, ``gmm``, ``shapes``).
"""
from typing import Callable, Dict, NamedTuple, Optional, Tuple

import torch
from torch.utils.data import Dataset

from .images import BINARIZATIONS, load_binmnist, load_fashion, load_omniglot
from .sources import MissingDataError, data_roots
from .splits import ArrayDataset, BinaryDataset, SampledDataset
from .gaussian_toy import load_gaussian_toy
from .gmm import load_gmm
from .shapes import load_shapes

MINI_SIZES = (5000, 500, 500)


class Datasets(NamedTuple):
    train: Dataset
    valid: Dataset
    test: Dataset
    x_shape: Tuple[int, ...]
    name: str


_FILE_LOADERS: Dict[str, Callable] = {"binmnist": load_binmnist, "fashion": load_fashion,
                                      "omniglot": load_omniglot}
_GENERATED_LOADERS: Dict[str, Callable] = {"gmm": load_gmm, "gaussian-toy": load_gaussian_toy,
                                           "shapes": load_shapes}
DATASET_NAMES = tuple(_FILE_LOADERS) + tuple(_GENERATED_LOADERS)
DYNAMIC_BINARIZATION = ("fashion", "omniglot")


def _random_subset(split, size: int, seed: int):
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    return split.subset(order[:size])


def get_datasets(name: str, data_root: Optional[str] = None, mini: bool = False, seed: int = 1,
                 only_train_set: bool = False, binarization: Optional[str] = None) -> Datasets:
    """Load the data set ``name`` (one of ``DATASET_NAMES``).

    Args:
        data_root: folder with the data files; ``None`` = ``$OVIS_DATA``, then ``./data``.
        mini: random subsets (without replacement) of at most 5,000 / 500 / 500 points,
            drawn with ``seed`` (train, valid) and ``seed + 1`` (test).
        only_train_set: the training split also serves as valid and test.
        binarization: ``static`` | ``dynamic`` for ``fashion`` and ``omniglot`` (default:
            static for fashion, dynamic for omniglot, as in the paper).

    Raises ``ValueError`` for an unknown name or option and ``MissingDataError`` (a
    ``FileNotFoundError``) when the files cannot be found.
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"unknown data set {name!r}; available data sets: {list(DATASET_NAMES)}")
    if binarization is not None:
        if binarization not in BINARIZATIONS:
            raise ValueError(f"binarization={binarization!r}; allowed: {list(BINARIZATIONS)}")
        if name not in DYNAMIC_BINARIZATION and not (name == "binmnist" and binarization == "static"):
            raise ValueError(f"binarization={binarization!r}: {name!r} has fixed values (binmnist is a fixed, "
                             f"static binarisation); binarization applies only to {list(DYNAMIC_BINARIZATION)}")
    if name in _FILE_LOADERS:
        train, valid, test = _FILE_LOADERS[name](data_roots(data_root), binarization)
    else:
        train, valid, test = _GENERATED_LOADERS[name]()
    if mini:
        train, valid, test = (_random_subset(split, size, split_seed) for split, size, split_seed
                              in zip((train, valid, test), MINI_SIZES, (seed, seed, seed + 1)))
    if only_train_set:
        valid = test = train
    return Datasets(train, valid, test, tuple(train.x_shape), name)


__all__ = ["get_datasets", "Datasets", "DATASET_NAMES", "MissingDataError", "ArrayDataset", "BinaryDataset",
           "SampledDataset"]
