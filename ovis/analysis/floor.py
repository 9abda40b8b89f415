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
from typing import Callable, List, Optional, Tuple

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
