"""The bound evaluations of a run: their threads, their rows per forward pass and the averaging
of their diagnostics over batches."""
import argparse
from contextlib import contextmanager
from typing import Dict, Iterable, Mapping, Tuple

import torch
from torch import Tensor, nn

DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before configure_threads changes it


@contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch CPU threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluation_threads(args: argparse.Namespace) -> int:
    """Threads of the bound evaluations: ``--threads`` when given, else torch's default (one per
    core, or ``OMP_NUM_THREADS``) even where ``configure_threads`` chose one thread for the small
    training step: an evaluation at K = 5000 has thousands of rows per forward pass."""
    return args.threads if args.threads > 0 else DEFAULT_THREADS


def chunk_rows(args: argparse.Namespace, model: nn.Module, device: torch.device, kept: int = 0) -> Tuple[int, str]:
    """Rows (data points x particles) per forward pass of a run's evaluations and analyses, which
    bound their memory at iw = 5000 or mc = 1000, and how they were chosen: one particle per data
    point with ``--sequential_computation`` (lowest memory), ``--chunk_rows``, else ``kept`` (a
    resumed run's first choice: the drawn particles depend on the rows), else measured on this
    machine (``ovis.analysis.floor.measured_chunk_rows``: throughput and free memory, with the
    evaluation threads)."""
    if args.sequential_computation:
        return min(args.test_bs, args.valid_bs), "--sequential_computation"
    if args.chunk_rows > 0:
        return args.chunk_rows, "--chunk_rows"
    if kept > 0:
        return kept, "kept from the checkpoint"
    from ovis.analysis.floor import measured_chunk_rows
    with torch_threads(evaluation_threads(args)):
        rows, throughput = measured_chunk_rows(model, device, max(args.test_bs * args.iw_test,
                                                                  args.valid_bs * args.iw_valid))
    speeds = ", ".join(f"{r}: {speed:.3g}" for r, speed in throughput.items())
    return rows, f"measured ({speeds or 'no linear maps'} rows per second)"


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
