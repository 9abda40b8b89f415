"""Deterministic data order for training and evaluation.

Every random choice about data is a function of the run seed and the position in training,
drawn from its own ``torch.Generator``: the order of epoch ``e`` from ``(seed, "order", e)``,
the randomness of batch ``b`` of that epoch (dynamic binarisation, GMM sampling) from
``(seed, "batch", e, b)``. A run resumed in the middle of an epoch therefore sees the same
batches as an unbroken run, and data loading never touches the global RNG that draws the
particles. Evaluation subsets are fixed once per run (``(seed, "subset", split)``).

Splits follow DESIGN 2: ``len(split)`` and ``split.batch(index, generator) -> [b, *x_shape]``.
"""
import hashlib
import math
from typing import Iterator, Optional

import torch
from torch import Tensor


def derive_seed(seed: int, *keys) -> int:
    """A 63-bit seed determined by ``seed`` and ``keys`` (stable across runs and platforms)."""
    text = "/".join(str(part) for part in (seed,) + keys)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


def generator(seed: int, *keys) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *keys))


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Copy a batch to ``device`` without waiting for the GPU: a copy from pageable host memory
    waits for every queued kernel (a host sync per batch), a copy from pinned memory does not."""
    if device.type == "cuda":
        x = x.pin_memory()
    return x.to(device, non_blocking=True)


def steps_per_epoch(n_points: int, batch_size: int) -> int:
    return math.ceil(n_points / batch_size)


def epoch_count(epochs: int, nsteps: int, n_points: int, batch_size: int) -> int:
    """``epochs`` if >= 0, else ``1 + floor(nsteps / steps_per_epoch)``, as in the original's training loop."""
    if epochs >= 0:
        return epochs
    return 1 + nsteps // steps_per_epoch(n_points, batch_size)


class _EpochBatches(torch.utils.data.Dataset):
    """Batch ``b`` of one epoch as a dataset item, so that worker processes can load it."""

    def __init__(self, split, order: Tensor, batch_size: int, seed: int, epoch: int):
        self.split, self.order, self.batch_size = split, order, batch_size
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return steps_per_epoch(len(self.order), self.batch_size)

    def __getitem__(self, b: int) -> Tensor:
        index = self.order[b * self.batch_size:(b + 1) * self.batch_size]  # [bs]
        return self.split.batch(index, generator=generator(self.seed, "batch", self.epoch, b))


class TrainingBatches:
    """Shuffled mini-batches of the training split, epoch by epoch.

    ``workers <= 1`` loads batches in the training process (the fast path: a batch is one
    indexing of the split's uint8 storage); more workers use a ``DataLoader`` over whole batches.
    Both give identical batches, in pinned memory when ``pin_memory`` (for CUDA devices).
    """

    def __init__(self, split, batch_size: int, seed: int, workers: int = 0, pin_memory: bool = False):
        self.split, self.batch_size, self.seed = split, batch_size, seed
        self.workers, self.pin_memory = workers, pin_memory

    def __len__(self) -> int:
        return steps_per_epoch(len(self.split), self.batch_size)

    def order(self, epoch: int) -> Tensor:
        return torch.randperm(len(self.split), generator=generator(self.seed, "order", epoch))  # [n]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Tensor]:
        """Batches ``start, start + 1, ...`` of epoch ``epoch``, each ``[bs, *x_shape]``."""
        batches = _EpochBatches(self.split, self.order(epoch), self.batch_size, self.seed, epoch)
        if self.workers <= 1:
            return (batches[b].pin_memory() if self.pin_memory else batches[b] for b in range(start, len(batches)))
        loader = torch.utils.data.DataLoader(batches, batch_size=None, sampler=range(start, len(batches)),
                                             num_workers=self.workers, pin_memory=self.pin_memory)
        return iter(loader)


class FixedSubset:
    """The same points, with the same dynamic binarisation, at every evaluation.

    ``max_points=None`` takes the whole split in its stored order; otherwise a seeded random
    subset of ``max_points`` points (a fixed, unbiased sample of the split)."""

    def __init__(self, split, max_points: Optional[int], seed: int, name: str):
        self.split, self.seed, self.name = split, seed, name
        n = len(split)
        if max_points is None or max_points >= n:
            self.index = torch.arange(n)  # [n]
        else:
            self.index = torch.randperm(n, generator=generator(seed, "subset", name))[:max_points]

    def __len__(self) -> int:
        return len(self.index)

    def batches(self, batch_size: int, device: torch.device, limit: Optional[int] = None) -> Iterator[Tensor]:
        """Batches ``[b, *x_shape]`` of the first ``limit`` points (default: all) on ``device``."""
        index = self.index if limit is None else self.index[:limit]
        data_generator = generator(self.seed, "subset-data", self.name)
        for chunk in torch.split(index, batch_size):
            yield to_device(self.split.batch(chunk, generator=data_generator), device)
