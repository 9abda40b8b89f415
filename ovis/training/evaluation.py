"""Averaging estimator diagnostics over evaluation batches."""
from typing import Dict, Iterable, Mapping

import torch
from torch import Tensor


class MetricAverager:
    """Running means of diagnostics over batches.

    Per-data-point values (``[bs]`` tensors) are weighted by the number of points, scalars
    count once per batch. Sums stay on the device until ``result()``, so averaging
    adds no host synchronisation per batch."""

    def __init__(self):
        self._sums: Dict[str, Tensor] = {}
        self._weights: Dict[str, float] = {}
        self.batches = 0

    def update(self, diagnostics: Mapping[str, Tensor]) -> None:
        """Add one batch's diagnostics."""
        self.batches += 1
        for key, value in diagnostics.items():
            value = torch.as_tensor(value).detach()
            total, weight = value.double().sum(), value.numel()
            self._sums[key] = total if key not in self._sums else self._sums[key] + total
            self._weights[key] = self._weights.get(key, 0) + weight

    def result(self) -> Dict[str, float]:
        return {key: total.item() / self._weights[key] for key, total in self._sums.items()}


def diagnostics_of(result) -> Mapping[str, Tensor]:
    """The diagnostics dict of an estimator call ``(loss, diagnostics, output)`` or of an
    evaluator that returns the diagnostics directly."""
    return result[1] if isinstance(result, tuple) else result


@torch.no_grad()
def evaluate_bound(evaluator, model, batches: Iterable[Tensor]) -> Dict[str, float]:
    """Average the diagnostics of ``evaluator(model, x)`` over ``batches``; adds ``info/iters``
    (the number of batches). The evaluator bounds its own memory (``BoundEvaluator`` draws
    its particles in chunks of rows)."""
    averager = MetricAverager()
    for x in batches:
        averager.update(diagnostics_of(evaluator(model, x)))
    values = averager.result()
    values["info/iters"] = float(averager.batches)
    return values
