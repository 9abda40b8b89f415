"""The bound evaluations of a run: their threads, their rows per forward pass and the averaging
of their diagnostics over batches."""
import argparse
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Mapping, Sequence, Tuple

import torch
from torch import Tensor, nn

from ovis.analysis.floor import timed
from ovis.estimators.evaluation import BoundEvaluator

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


# Rows (data points x particles) per evaluation chunk that ``measured_chunk_rows`` chooses from
CHUNK_CANDIDATES = {"cpu": (512, 1024, 2048, 4096, 8192, 16384, 32768),
                    "cuda": (4096, 8192, 16384, 32768, 65536, 131072, 262144)}
# float32 values of a chunk row per linear output (logits, probabilities, samples, log-densities and
# temporaries): 8 x 4 bytes x 1784 outputs = 57 KB per row of the SBN 3 x 200, twice its measured 28 KB
ROW_TENSORS = 8
MEMORY_SHARE = 4  # an evaluation chunk takes at most a quarter of the free memory


def chunk_rows(args: argparse.Namespace, model: nn.Module, x: Tensor, kept: int = 0) -> Tuple[int, str]:
    """Rows (data points x particles) per forward pass of a run's evaluations and analyses, which
    bound their memory at iw = 5000 or mc = 1000, and how they were chosen: one particle per data
    point with ``--sequential_computation`` (lowest memory), ``--chunk_rows``, else ``kept`` (a
    resumed run's first choice: the drawn particles depend on the rows), else measured on this
    machine with the evaluation threads (``measured_chunk_rows`` on the data point ``x [1, *D]``)."""
    if args.sequential_computation:
        return min(args.test_bs, args.valid_bs), "--sequential_computation"
    if args.chunk_rows > 0:
        return args.chunk_rows, "--chunk_rows"
    if kept > 0:
        return kept, "kept from the checkpoint"
    with torch_threads(evaluation_threads(args)):
        largest = max(args.test_bs * args.iw_test, args.valid_bs * args.iw_valid)
        rows, throughput = measured_chunk_rows(model, x, largest)
    speeds = ", ".join(f"{r}: {speed:.3g}" for r, speed in throughput.items())
    return rows, f"measured ({speeds} rows per second)"


def measured_chunk_rows(model: nn.Module, x: Tensor, largest_rows: int) -> Tuple[int, Dict[int, float]]:
    """``fastest_chunk_rows`` of ``BoundEvaluator``'s pass of the data point ``x [1, *D]`` with as
    many particles as rows, on ``x``'s device, within ``1 / MEMORY_SHARE`` of its free memory at
    ``ROW_TENSORS`` float32 values per output of the model's linear maps, among the device's
    ``CHUNK_CANDIDATES`` up to the first that holds ``largest_rows`` (the largest evaluation's rows:
    larger chunks would run the same passes). The global RNG is forked: the caller's draws do not
    depend on the measurement. Returns the rows and the measured rows per second."""
    device = x.device
    outputs = sum(module.out_features for module in model.modules() if isinstance(module, nn.Linear))
    candidates = CHUNK_CANDIDATES["cuda" if device.type == "cuda" else "cpu"]
    candidates = [rows for rows in candidates if rows < largest_rows] + [
        next((rows for rows in candidates if rows >= largest_rows), candidates[-1])]

    def run_chunk(rows: int) -> None:
        BoundEvaluator(rows, chunk_size=rows)(model, x, return_diagnostics=False)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
        return fastest_chunk_rows(run_chunk, device, available_memory(device) / MEMORY_SHARE,
                                  ROW_TENSORS * 4 * outputs, candidates=sorted(set(candidates)))


def fastest_chunk_rows(run_chunk: Callable[[int], Any], device: torch.device, memory_bytes: float,
                       bytes_per_row: float, candidates: Sequence[int], tolerance: float = 0.1,
                       repeats: int = 3) -> Tuple[int, Dict[int, float]]:
    """The smallest of ``candidates`` whose chunk (``run_chunk(rows)``) runs within ``tolerance``
    of the best measured rows per second, among those that fit ``memory_bytes`` at
    ``bytes_per_row``: wall-clock time, what the evaluation's threads save; with one CPU thread,
    process CPU time (the same on an idle machine, unaffected by the load). Candidates are measured
    in increasing size until two in a row are no faster than ``1 + tolerance`` times the best so
    far (the throughput has levelled off: larger chunks would only take more memory). Returns the
    rows and the measured rows per second of every candidate measured."""
    fitting = sorted(rows for rows in candidates if rows * bytes_per_row <= memory_bytes) or [min(candidates)]
    clock = 1 if device.type == "cpu" and torch.get_num_threads() == 1 else 0  # timed: (wall, CPU) ms
    throughput: Dict[int, float] = {}
    best, flat = 0.0, 0
    for rows in fitting:
        run_chunk(rows)  # first touch of the chunk's memory
        throughput[rows] = rows / min(timed(run_chunk, device, rows)[clock] for _ in range(repeats)) * 1e3
        flat = flat + 1 if throughput[rows] <= (1 + tolerance) * best else 0
        best = max(best, throughput[rows])
        if flat == 2:
            break
    return min(rows for rows, speed in throughput.items() if speed >= (1 - tolerance) * best), throughput


def available_memory(device: torch.device) -> float:
    """Bytes of memory free on ``device``: the CUDA device's free memory, or the host's MemAvailable."""
    if device.type == "cuda":
        return float(torch.cuda.mem_get_info(device)[0])
    with open("/proc/meminfo") as f:
        return float(next(line.split()[1] for line in f if line.startswith("MemAvailable:"))) * 1024


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
