"""Device selection and CPU threads, shared by the training script, the queue, the benchmarks and
library users (``ovis.set_threads``)."""
from typing import Optional, Union

import torch

# Multiply-adds of a training step (rows x parameters) below which one CPU thread is fastest: the
# step's ~250 operations then take microseconds each, and handing each to a second thread costs
# about as much as it saves (a 3 x 200 SBN at batch 24: iw = 5 is below, iw = 50 above).
SINGLE_THREAD_STEP_MACS = 2e8


def resolve_device(spec: str = "auto") -> torch.device:
    """Map ``auto|cpu|cuda|cuda:N`` to a torch device.

    ``auto`` takes the first visible GPU when CUDA is available (the queue pins each worker
    with ``CUDA_VISIBLE_DEVICES``), otherwise the CPU. Asking for CUDA on a machine without it
    is an error rather than a silent fallback.
    """
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"--device {spec}: CUDA is not available on this machine; use --device cpu or auto")
        device = torch.device(spec)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(
                f"--device {spec}: only {torch.cuda.device_count()} CUDA device(s) visible "
                f"(CUDA_VISIBLE_DEVICES limits this)")
        return device
    raise ValueError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


def set_threads(threads: int = 0, step_macs: Optional[float] = None, device: Union[str, torch.device] = "cpu") -> int:
    """PyTorch's CPU threads, as ``run.py --threads`` sets them; returns the count in force.

    ``threads > 0``: that many. ``0``: one thread on a CPU when the training step is small
    (``step_macs``, rows x parameters, below ``SINGLE_THREAD_STEP_MACS``), else torch's default
    is left alone. Small models on a shared CPU run many times faster on one thread than on
    torch's default of one per core: ``ovis.set_threads(1)``.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads={threads!r}: expected an integer >= 1, or 0 for ovis' choice")
    if threads > 0:
        torch.set_num_threads(threads)
    elif torch.device(device).type == "cpu" and step_macs is not None and step_macs < SINGLE_THREAD_STEP_MACS:
        torch.set_num_threads(1)
    return torch.get_num_threads()
