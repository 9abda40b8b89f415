"""``run.py --compile``: the training step as compiled programs (``torch.compile``).

* the gradient pass: the estimator's forward pass (sampling included), the surrogate and its
  backward pass, traced together into one graph (dynamo's ``trace_autograd_ops``: ``backward()``
  inside the traced function becomes part of the graph instead of a graph break); an estimator
  whose call breaks the graph gets its call compiled and an eager ``backward()`` instead;
* each optimiser's ``step``, compiled on its own: ``torch.optim`` breaks the graph around its
  update on purpose (the update must be traced without gradient).

On CUDA both run as CUDA graphs (``mode="reduce-overhead"``): one launch replays the step's
kernels. The CUDA path is untested (no GPU was lent to this project so far).
"""
from typing import Callable

import torch
import torch._dynamo.config as dynamo_config


def compile_mode(device: torch.device) -> str:
    """``reduce-overhead`` (CUDA graphs) on CUDA, inductor's default elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else "default"


def compiled_gradient_pass(function: Callable, device: torch.device, fallback: Callable) -> Callable:
    """``function`` (forward pass, ``backward()`` inside) compiled as one graph for ``device``;
    where it cannot be one graph (a graph break: NVIL updates its statistics outside the graph,
    and a ``backward()`` traced after a break leaves the parameters without gradients), every
    call goes to ``fallback`` instead. Dynamo refuses before running anything, so the call that
    found out runs once, in ``fallback``."""
    compiled = {"call": torch.compile(function, mode=compile_mode(device), fullgraph=True)}

    def gradient_pass(*args, **kwargs):
        if compiled["call"] is fallback:
            return fallback(*args, **kwargs)
        try:
            with dynamo_config.patch(trace_autograd_ops=True):  # read when dynamo traces (first call, recompiles)
                return compiled["call"](*args, **kwargs)
        except torch._dynamo.exc.Unsupported:
            compiled["call"] = fallback
            return fallback(*args, **kwargs)
    return gradient_pass


def compiled_optimizer_step(optimizer: torch.optim.Optimizer, device: torch.device) -> Callable:
    """``optimizer.step`` compiled for ``device`` (torch's compiled optimiser)."""
    return torch.compile(optimizer.step, mode=compile_mode(device))
