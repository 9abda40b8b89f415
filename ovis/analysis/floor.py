"""The hardware floor of a training step: its bare matrix products, timed on this machine.

A step of a VAE-like model (``HierarchicalVAE``: the SBN, the Gaussian VAE) spends its
arithmetic in the ``nn.Linear`` layers. Its floor is the time of those products alone, with
the shapes of the step, in the same process and threads as the step:

* forward: ``out [n, o] = in [n, i] @ W^T [i, o]`` for every linear layer;
* weight gradients: ``dW [o, i] = dout^T [o, n] @ in [n, i]``, as many again;
* input gradients ``din [n, i] = dout [n, o] @ W [o, i]`` only where a gradient flows into the
  layer's input. In a score-function step the sampled latents carry no gradient, so no layer
  needs one. In a pathwise step (``pathwise-iwae``, ``dreg``, ``stl``) the latents carry
  gradients: every layer needs one except the first layer of the data path (its input is x).

``n`` is the number of rows the layer sees. Every layer of the inference network before the
first sampled layer (``inference_network[0]``: the SBN's first linear map, the Gaussian VAE's
whole encoder) depends on x alone: its floor takes it once per data point (``bs`` rows), the
rest once per particle (``bs * mc * iw`` rows). Element-wise work (activations, sampling,
log-densities, the optimiser) is not part of the floor: ``step time / floor time`` measures it.
"""
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class LinearShape:
    """One linear layer of the step: ``rows`` inputs of ``in_features``, ``out_features`` outputs."""
    rows: int
    in_features: int
    out_features: int
    input_gradient: bool


def step_shapes(model: nn.Module, batch_size: int, particles: int, pathwise: bool) -> Optional[List[LinearShape]]:
    """The linear layers of one training step of ``model`` (see the module docstring), or None
    for a model without an ``inference_network`` list (its floor is not defined here)."""
    inference = getattr(model, "inference_network", None)
    if not isinstance(inference, nn.ModuleList) or len(inference) == 0:
        return None
    shared = {id(module) for module in inference[0].modules()}
    shapes, first = [], True
    for module in model.modules():
        if not isinstance(module, nn.Linear):
            continue
        once = id(module) in shared
        shapes.append(LinearShape(batch_size if once else batch_size * particles, module.in_features,
                                  module.out_features, pathwise and not (once and first)))
        first = first and not once
    return shapes


class MatmulFloor:
    """The bare matrix products of ``shapes`` on preallocated tensors (no allocation when timed);
    ``gradients=False``: the forward products only (an evaluation without gradients)."""

    def __init__(self, shapes: List[LinearShape], device: torch.device, dtype=torch.float32, gradients: bool = True):
        self.shapes, self.device, self.gradients = shapes, device, gradients
        make = lambda *size: torch.randn(*size, device=device, dtype=dtype)  # noqa: E731
        self.tensors = []
        for s in shapes:
            self.tensors.append(dict(
                x=make(s.rows, s.in_features), weight=make(s.out_features, s.in_features),
                bias=make(s.out_features), out=make(s.rows, s.out_features)))  # [n, i], [o, i], [o], [n, o]
            if gradients:
                self.tensors[-1].update(
                    grad=make(s.rows, s.out_features), weight_grad=make(s.out_features, s.in_features),
                    input_grad=make(s.rows, s.in_features) if s.input_gradient else None)

    def run(self) -> None:
        """One step's products: forward, then weight (and input) gradients."""
        for t in self.tensors:
            torch.addmm(t["bias"], t["x"], t["weight"].t(), out=t["out"])  # [n, o]
        for t in reversed(self.tensors if self.gradients else []):
            torch.mm(t["grad"].t(), t["x"], out=t["weight_grad"])  # [o, i]
            if t["input_grad"] is not None:
                torch.mm(t["grad"], t["weight"], out=t["input_grad"])  # [n, i]

    @property
    def multiply_adds(self) -> int:
        passes = lambda s: (3 if s.input_gradient else 2) if self.gradients else 1  # noqa: E731
        return sum(s.rows * s.in_features * s.out_features * passes(s) for s in self.shapes)


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(function: Callable, device: torch.device, *args) -> Tuple[float, float]:
    """``(wall, cpu)``: milliseconds of wall-clock and of this process's CPU time (all its
    threads) of ``function(*args)``, CUDA synchronised around it. On a loaded machine the CPU
    time of a one-thread call is what its wall-clock time would be on an idle one (the waits
    for a core are left out)."""
    synchronise(device)
    wall, cpu = time.perf_counter(), time.process_time()
    function(*args)
    synchronise(device)
    return 1e3 * (time.perf_counter() - wall), 1e3 * (time.process_time() - cpu)


def describe(shapes: List[LinearShape]) -> str:
    """``"784x200 on 24 rows (+dx), ..."``: the floor's products in words."""
    return ", ".join(f"{s.in_features}x{s.out_features} on {s.rows} rows{' (+dx)' if s.input_gradient else ''}"
                     for s in shapes)


def floor_of(model: nn.Module, x: Tensor, particles: int, pathwise: bool) -> Optional[MatmulFloor]:
    """The ``MatmulFloor`` of a step of ``model`` on the batch ``x [bs, *D]`` with ``particles``
    (mc x iw, auxiliary ones included) per data point, on x's device; None if not defined."""
    shapes = step_shapes(model, x.shape[0], particles, pathwise)
    return None if shapes is None else MatmulFloor(shapes, x.device, x.dtype)


def evaluation_floor_of(model: nn.Module, points: int, particles: int, device: torch.device,
                        dtype=torch.float32) -> Optional[MatmulFloor]:
    """The forward products of one evaluation chunk of ``points`` data points x ``particles``
    (no gradients; the first inference layer once per data point); None if not defined."""
    shapes = step_shapes(model, points, particles, pathwise=False)
    return None if shapes is None else MatmulFloor(shapes, device, dtype, gradients=False)


# Rows (data points x particles) per evaluation chunk that ``measured_chunk_rows`` chooses from
CHUNK_CANDIDATES = {"cpu": (512, 1024, 2048, 4096, 8192, 16384, 32768),
                    "cuda": (4096, 8192, 16384, 32768, 65536, 131072, 262144)}
# float32 values of a chunk row per linear output (logits, probabilities, samples, log-densities and
# temporaries): 8 x 4 bytes x 1784 outputs = 57 KB per row of the SBN 3 x 200, twice its measured 28 KB
ROW_TENSORS = 8
MEMORY_SHARE = 4  # an evaluation chunk takes at most a quarter of the free memory


def evaluation_chunk_rows(model: nn.Module, device: torch.device, memory_bytes: float, bytes_per_row: float,
                          candidates=CHUNK_CANDIDATES["cpu"], tolerance: float = 0.1,
                          repeats: int = 3) -> Tuple[int, Dict[int, float]]:
    """Rows per evaluation chunk from this machine's measured throughput and memory: the smallest
    of ``candidates`` whose forward products (``evaluation_floor_of``, one data point) run within
    ``tolerance`` of the best measured rows per second (process CPU time on a CPU, all threads:
    thread synchronisation counts), among those that fit ``memory_bytes`` at ``bytes_per_row``.
    Candidates are measured in increasing size until two in a row are no faster than ``1 +
    tolerance`` times the best so far (the throughput has levelled off: larger chunks would only
    take more memory). Returns the rows and the measured rows per second of every candidate
    measured."""
    fitting = sorted(rows for rows in candidates if rows * bytes_per_row <= memory_bytes) or [min(candidates)]
    throughput: Dict[int, float] = {}
    best, flat = 0.0, 0
    for rows in fitting:
        floor = evaluation_floor_of(model, 1, rows, device)
        if floor is None:
            return min(fitting), {}
        floor.run()  # first touch of the buffers
        clock = 0 if device.type == "cuda" else 1  # wall-clock on CUDA; process CPU time on a CPU (load-proof)
        throughput[rows] = rows / min(timed(floor.run, device)[clock] for _ in range(repeats)) * 1e3
        del floor
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


def measured_chunk_rows(model: nn.Module, device: torch.device, largest_rows: int) -> Tuple[int, Dict[int, float]]:
    """``evaluation_chunk_rows`` of ``model`` on ``device`` within ``1 / MEMORY_SHARE`` of its free
    memory, at ``ROW_TENSORS`` float32 values per output of its linear maps, among the device's
    ``CHUNK_CANDIDATES`` up to the first that holds ``largest_rows`` (the largest evaluation's rows:
    larger chunks would run the same passes). Returns the rows and the measured rows per second."""
    outputs = sum(module.out_features for module in model.modules() if isinstance(module, nn.Linear))
    candidates = CHUNK_CANDIDATES["cuda" if device.type == "cuda" else "cpu"]
    candidates = [rows for rows in candidates if rows < largest_rows] + [
        next((rows for rows in candidates if rows >= largest_rows), candidates[-1])]
    return evaluation_chunk_rows(model, device, available_memory(device) / MEMORY_SHARE,
                                 ROW_TENSORS * 4 * outputs, candidates=tuple(sorted(set(candidates))))
