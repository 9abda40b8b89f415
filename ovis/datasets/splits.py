"""Data set splits: ``torch.utils.data.Dataset`` objects with a fast ``batch`` path.

The training loop draws ``split.batch(index, generator)`` (one indexing + one conversion per
batch); ``DataLoader`` users get the same values item by item through ``__getitem__``.
"""
import math
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset


def _as_index(index) -> Tensor:
    return torch.as_tensor(index, dtype=torch.long)


class ArrayDataset(Dataset):
    """Stored data points ``values [n, *x_shape]`` (images as ``uint8`` to save memory).

    Returned points are ``values / scale`` as float32 (``scale = 255`` for grey levels), or,
    with ``dynamic=True``, binary draws x ~ Bernoulli(values / scale) made afresh at every
    access (dynamic binarisation).
    """

    def __init__(self, values: Tensor, scale: float = 1.0, dynamic: bool = False):
        self.values, self.scale, self.dynamic = values, float(scale), dynamic

    @property
    def x_shape(self) -> Tuple[int, ...]:
        return tuple(self.values.shape[1:])

    def __len__(self) -> int:
        return self.values.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self._convert(self.values[i], None)

    def batch(self, index, generator: Optional[torch.Generator] = None) -> Tensor:
        """``index [b]`` -> float32 ``[b, *x_shape]``; dynamic binarisation draws from ``generator``."""
        return self._convert(self.values[_as_index(index)], generator)

    def _convert(self, values: Tensor, generator: Optional[torch.Generator]) -> Tensor:
        x = values.to(torch.float32)
        if self.scale != 1.0:
            x = x.div_(self.scale)
        if self.dynamic:  # comparing uniforms is ~4x faster than torch.bernoulli on CPU
            x = (torch.rand(x.shape, generator=generator) < x).to(torch.float32)
        return x

    def mean(self) -> Tensor:
        """Mean data point ``[*x_shape]`` (for dynamic binarisation: the mean probability)."""
        return torch.from_numpy(self.values.numpy().mean(0, dtype="float64") / self.scale).to(torch.float32)

    def subset(self, index) -> "ArrayDataset":
        return ArrayDataset(self.values[_as_index(index)], self.scale, self.dynamic)


class BinaryDataset(Dataset):
    """Fixed binary data points stored as bits (``uint8 [n, ceil(D / 8)]``, 8 pixels a byte), so
    that 50,000 binarized MNIST images take 5 MB instead of 39 MB; unpacked per batch."""

    def __init__(self, bits: np.ndarray, x_shape: Sequence[int]):
        self.bits, self._x_shape = bits, tuple(int(d) for d in x_shape)
        self.n_features = math.prod(self._x_shape)
        if bits.ndim != 2 or bits.shape[1] != (self.n_features + 7) // 8:
            raise ValueError(f"bits of shape {bits.shape} do not hold data points of shape {self._x_shape}")

    @classmethod
    def from_values(cls, values: np.ndarray) -> "BinaryDataset":
        """``values`` in {0, 1}, ``[n, *x_shape]``."""
        values = np.asarray(values)
        flat = values.reshape(len(values), -1)
        if not (flat.dtype == np.bool_ or np.issubdtype(flat.dtype, np.integer)):
            flat = flat != 0
        return cls(np.packbits(flat, axis=1), values.shape[1:])  # nonzero -> 1

    @property
    def x_shape(self) -> Tuple[int, ...]:
        return self._x_shape

    def __len__(self) -> int:
        return self.bits.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self._unpack(self.bits[i][None])[0]

    def batch(self, index, generator: Optional[torch.Generator] = None) -> Tensor:
        """``index [b]`` -> float32 ``[b, *x_shape]`` in {0, 1} (``generator`` unused: fixed data)."""
        return self._unpack(self.bits[_as_index(index).numpy()])

    def _unpack(self, bits: np.ndarray) -> Tensor:
        values = np.unpackbits(bits, axis=1, count=self.n_features)  # [b, D] uint8
        return torch.from_numpy(values.reshape(-1, *self._x_shape)).to(torch.float32)

    def mean(self, chunk: int = 4096) -> Tensor:
        total = np.zeros(self.n_features, dtype=np.float64)
        for start in range(0, len(self), chunk):
            total += np.unpackbits(self.bits[start:start + chunk], axis=1, count=self.n_features).sum(0)
        return torch.from_numpy(total / len(self)).to(torch.float32).view(self._x_shape)

    def subset(self, index) -> "BinaryDataset":
        return BinaryDataset(self.bits[_as_index(index).numpy()], self._x_shape)


class SampledDataset(Dataset):
    """A data set of ``length`` points drawn afresh from ``sampler(n, generator) -> [n, *x_shape]``
    at every access (the GMM training set); ``mean`` is the distribution's mean ``[*x_shape]``."""

    def __init__(self, sampler: Callable[[int, Optional[torch.Generator]], Tensor], length: int,
                 mean: Tensor, x_shape: Sequence[int]):
        self.sampler, self.length, self._mean = sampler, int(length), mean
        self._x_shape = tuple(x_shape)

    @property
    def x_shape(self) -> Tuple[int, ...]:
        return self._x_shape

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Tensor:
        if not -self.length <= i < self.length:
            raise IndexError(f"index {i} out of range for a data set of {self.length} points")
        return self.sampler(1, None)[0]

    def batch(self, index, generator: Optional[torch.Generator] = None) -> Tensor:
        return self.sampler(len(_as_index(index)), generator)

    def mean(self) -> Tensor:
        return self._mean.clone()

    def subset(self, index) -> "SampledDataset":
        return SampledDataset(self.sampler, len(_as_index(index)), self._mean, self._x_shape)
