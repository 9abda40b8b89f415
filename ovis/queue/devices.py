"""GPU discovery and worker slots for the local manager.

GPUs are listed with ``nvidia-smi`` (memory and utilisation, so busy GPUs can be skipped) and,
when it is missing, with ``torch.cuda.device_count()``. A ``CUDA_VISIBLE_DEVICES`` set for the
manager restricts the choice. Each worker is pinned to one GPU by setting
``CUDA_VISIBLE_DEVICES`` for its runs (so ``--device auto`` in a run sees exactly one GPU); CPU
workers get ``CUDA_VISIBLE_DEVICES=""`` and a share of the CPU cores.
"""
import os
import subprocess
from dataclasses import dataclass
from typing import List, Optional, Tuple

from ovis.cli import comma_list

NVIDIA_SMI_QUERY = "index,uuid,name,memory.used,memory.total,utilization.gpu"


@dataclass(frozen=True)
class GPU:
    """A GPU as the manager sees it; ``visible_id`` is the value for CUDA_VISIBLE_DEVICES."""
    visible_id: str
    name: str = "GPU"
    memory_used: Optional[float] = None   # MiB
    memory_total: Optional[float] = None  # MiB
    load: Optional[float] = None          # utilisation in [0, 1]

    @property
    def memory_fraction(self) -> Optional[float]:
        if self.memory_used is None or not self.memory_total:
            return None
        return self.memory_used / self.memory_total


@dataclass(frozen=True)
class WorkerSlot:
    """One worker: its device label (recorded in the database) and environment."""
    name: str
    device: str                       # "cuda:<visible id>" or "cpu"
    cuda_visible_devices: str         # "" hides every GPU
    cpu_threads: Optional[int] = None


def _visible_filter() -> Optional[List[str]]:
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None:
        return None
    return [v for v in comma_list(value) if v != "-1"]


def _float(text: str) -> Optional[float]:
    try:
        return float(text)
    except ValueError:
        return None


def query_nvidia_smi() -> Optional[List[GPU]]:
    """GPUs reported by nvidia-smi (None when it is not installed or fails)."""
    try:
        result = subprocess.run(["nvidia-smi", f"--query-gpu={NVIDIA_SMI_QUERY}", "--format=csv,noheader,nounits"],
                                capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if result.returncode != 0:
        return None
    gpus = []
    for line in result.stdout.strip().splitlines():
        fields = [f.strip() for f in line.split(",")]
        if len(fields) != 6:
            continue
        index, uuid, name, used, total, load = fields
        utilisation = _float(load)
        gpus.append((index, uuid, GPU(index, name, _float(used), _float(total),
                                      None if utilisation is None else utilisation / 100.0)))
    visible = _visible_filter()
    if visible is None:
        return [gpu for _, _, gpu in gpus]
    # Keep the manager's own restriction, addressing GPUs the way it was written (index or UUID).
    by_key = {key: gpu for index, uuid, gpu in gpus for key in (index, uuid)}
    return [GPU(v, by_key[v].name, by_key[v].memory_used, by_key[v].memory_total, by_key[v].load)
            for v in visible if v in by_key]


def query_torch() -> List[GPU]:
    try:
        import torch
    except ImportError:
        return []
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = _visible_filter()
    ids = visible[:count] if visible is not None else [str(i) for i in range(count)]
    return [GPU(i, torch.cuda.get_device_name(n)) for n, i in enumerate(ids)]


def list_gpus() -> List[GPU]:
    gpus = query_nvidia_smi()
    return gpus if gpus is not None else query_torch()


def select_gpus(gpus: List[GPU], max_gpus: int, max_load: float, max_memory: float) -> Tuple[List[GPU], List[str]]:
    """GPUs with load <= max_load and used-memory fraction <= max_memory, least used memory
    first, at most ``max_gpus``; also returns why the others were skipped."""
    chosen, skipped = [], []
    for gpu in gpus:
        if gpu.load is not None and gpu.load > max_load:
            skipped.append(f"GPU {gpu.visible_id} ({gpu.name}): load {gpu.load:.0%} > --max_load {max_load:.0%}")
        elif gpu.memory_fraction is not None and gpu.memory_fraction > max_memory:
            skipped.append(f"GPU {gpu.visible_id} ({gpu.name}): memory {gpu.memory_fraction:.0%} used "
                           f"> --max_memory {max_memory:.0%}")
        else:
            chosen.append(gpu)
    chosen.sort(key=lambda g: g.memory_fraction or 0.0)
    for gpu in chosen[max_gpus:]:
        skipped.append(f"GPU {gpu.visible_id} ({gpu.name}): beyond --max_gpus {max_gpus}")
    return chosen[:max_gpus], skipped


def worker_slots(gpus: List[GPU], processes: int, cpu_count: Optional[int] = None) -> List[WorkerSlot]:
    """``processes`` workers per GPU, or ``processes`` CPU workers when there is no GPU."""
    if processes < 1:
        raise ValueError(f"--processes must be >= 1, got {processes}")
    if gpus:
        return [WorkerSlot(f"gpu{gpu.visible_id}-{p}", f"cuda:{gpu.visible_id}", gpu.visible_id)
                for gpu in gpus for p in range(processes)]
    cores = cpu_count or os.cpu_count() or 1
    threads = max(1, cores // processes)
    return [WorkerSlot(f"cpu-{p}", "cpu", "", threads) for p in range(processes)]
