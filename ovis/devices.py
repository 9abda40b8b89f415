"""Device selection shared by the training script, the queue and the benchmarks."""
import torch


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
