"""Speed and memory of training steps per estimator and number of particles K.

Each configuration (``Workload``) is measured in a fresh Python process, so that one
configuration's allocator caches and peak memory never leak into the next:

* time: ``warmup`` steps, then the wall-clock time of each of ``steps`` steps (CUDA is
  synchronised around each step); the median is the headline number;
* memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident set size
  (``VmHWM``, reset through ``/proc/self/clear_refs`` right before the first step; where
  that is not possible, the process's lifetime peak ``ru_maxrss``). Reported as the process
  peak and as the growth over the footprint before the first step (model, optimiser, data).

A training step is what the trainer does for every batch: the estimator's surrogate loss
with its backward pass, then one step of Adam on the model (and of the baseline's Adam when
the estimator owns parameters). ``kind="evaluate"`` times the plain bound
(``BoundEvaluator``, chunked) instead, e.g. K = 5000 at test time.
"""
import math
import re
import resource
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ovis.datasets import get_datasets
from ovis.devices import resolve_device
from ovis.estimators.config import parse_estimator_id
from ovis.estimators.evaluation import BoundEvaluator
from ovis.models import get_model

MIB = 2 ** 20
# ru_maxrss is in kilobytes on Linux, in bytes on macOS.
RU_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
# The paper's models (SPEC 10): the 3 x 200 linear SBN of Figure 3 and the Gaussian VAE of
# the TVO budget analysis (200 latents, two hidden layers of 200 units).
MODEL_PRESETS = {
    "sbm": {"N": 200, "depth": 3, "nlayers": 0},
    "gaussian-vae": {"N": 200, "hdim": 200, "nlayers": 2, "depth": 1},
}
KINDS = ("train", "evaluate")


class IncompatibleWorkload(ValueError):
    """The estimator cannot train the model (e.g. a pathwise estimator on the discrete SBN)."""


@dataclass(frozen=True)
class Workload:
    """One measured configuration. ``hparams`` override the model preset; ``chunk_size``
    bounds the rows per forward pass of ``kind="evaluate"``."""
    model: str
    estimator: str
    iw: int
    batch_size: int = 24
    mc: int = 1
    kind: str = "train"
    dataset: str = "binmnist"
    data_root: Optional[str] = None
    device: str = "auto"
    warmup: int = 3
    steps: int = 20
    lr: float = 1e-3
    threads: int = 0
    chunk_size: Optional[int] = None
    seed: int = 1
    hparams: Dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}: expected one of {KINDS}")
        if self.iw < 1 or self.mc < 1 or self.batch_size < 1 or self.steps < 1 or self.warmup < 0:
            raise ValueError(f"{self}: iw, mc, batch_size and steps must be >= 1, warmup >= 0")


@dataclass
class Measurement:
    """Step times in milliseconds and memory in MiB of one workload."""
    workload: Workload
    device: str
    step_ms: List[float]
    peak_memory_mib: float
    step_memory_mib: float
    memory_source: str

    def row(self) -> Dict:
        times = np.asarray(self.step_ms)
        workload = asdict(self.workload)
        workload.pop("hparams")
        return {**workload, "device_used": self.device, "time_ms": float(np.median(times)),
                "time_ms_p10": float(np.percentile(times, 10)), "time_ms_p90": float(np.percentile(times, 90)),
                "peak_memory_mib": self.peak_memory_mib, "step_memory_mib": self.step_memory_mib,
                "memory_source": self.memory_source}


class _PeakMemory:
    """Peak memory of the measured steps on one device (see the module docstring)."""

    def __init__(self, device):
        self.device = device
        self.source = "cuda_max_allocated" if device.type == "cuda" else "vmhwm"

    @staticmethod
    def _status(field_name: str) -> Optional[float]:
        try:
            with open("/proc/self/status") as f:
                match = re.search(rf"^{field_name}:\s+(\d+)\s+kB", f.read(), re.MULTILINE)
        except OSError:
            return None
        return None if match is None else int(match.group(1)) * 1024 / MIB

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.baseline = torch.cuda.memory_allocated(self.device) / MIB
            return
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # resets VmHWM to the current RSS
            self.baseline = self._status("VmRSS")
        except OSError:
            self.baseline = None
        if self.baseline is None:
            self.source = "ru_maxrss"
            self.baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RU_MAXRSS_UNIT / MIB

    def peak(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / MIB
        if self.source == "vmhwm":
            return self._status("VmHWM")
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RU_MAXRSS_UNIT / MIB


def _batches(workload: Workload, count: int):
    """``count`` training batches ``[bs, *x_shape]`` (drawn once, so that data loading is not
    timed) and the training-set mean."""
    datasets = get_datasets(workload.dataset, data_root=workload.data_root, seed=workload.seed)
    generator = torch.Generator().manual_seed(workload.seed)
    index = torch.randint(len(datasets.train), (count, workload.batch_size), generator=generator)
    batches = [datasets.train.batch(i, generator=generator) for i in index]
    return batches, datasets.train.mean(), datasets.x_shape


def _synchronise(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure_in_this_process(workload: Workload) -> Measurement:
    """Measure ``workload`` here (``measure`` runs this in a fresh process)."""
    if workload.threads > 0:
        torch.set_num_threads(workload.threads)
    device = resolve_device(workload.device)
    torch.manual_seed(workload.seed)
    batches, x_mean, x_shape = _batches(workload, workload.warmup + workload.steps)
    batches = [x.to(device) for x in batches]
    hparams = {**MODEL_PRESETS.get(workload.model, {}), **workload.hparams}
    model = get_model(workload.model, x_shape=x_shape, x_mean=x_mean, **hparams).to(device)

    if workload.kind == "train":
        Estimator, config = parse_estimator_id(workload.estimator)
        estimator = Estimator(mc=workload.mc, iw=workload.iw, x_shape=x_shape, **config).to(device)
        try:
            estimator.check_model(model)
        except ValueError as error:
            raise IncompatibleWorkload(str(error)) from None
        optimizers = [torch.optim.Adam(model.parameters(), lr=workload.lr)]
        if any(True for _ in estimator.parameters()):
            optimizers.append(torch.optim.Adam(estimator.parameters(), lr=workload.lr))
        model.train()

        def step(x):
            loss, _, _ = estimator(model, x, backward=False, return_diagnostics=True)  # as the trainer
            loss.mean().backward()
            for optimizer in optimizers:
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
    else:
        evaluator = BoundEvaluator(workload.iw, chunk_size=workload.chunk_size)
        model.eval()

        def step(x):
            with torch.no_grad():
                evaluator(model, x)

    memory = _PeakMemory(device)
    memory.start()
    for x in batches[:workload.warmup]:
        step(x)
    times = []
    for x in batches[workload.warmup:]:
        _synchronise(device)
        start = time.perf_counter()
        step(x)
        _synchronise(device)
        times.append(1e3 * (time.perf_counter() - start))
    peak = memory.peak()
    return Measurement(workload, str(device), times, peak, peak - memory.baseline, memory.source)


def measure(workload: Workload) -> Measurement:
    """Measure ``workload`` in a fresh process (spawned, so CUDA and allocator state start clean)."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure_in_this_process, workload).result()


def efficiency_table(workloads: Sequence[Workload], log=print) -> pd.DataFrame:
    """Measure every workload (skipping incompatible model/estimator pairs, with a message);
    adds ``time_vs_reinforce`` = time / time of ``reinforce`` at the same model and K."""
    rows, incompatible = [], set()
    for workload in workloads:
        if (workload.model, workload.estimator) in incompatible:
            continue
        try:
            row = measure(workload).row()
        except IncompatibleWorkload as reason:
            log(f"skip {workload.model} / {workload.estimator}: {reason}")
            incompatible.add((workload.model, workload.estimator))
            continue
        log(f"{row['model']:>12s} {row['estimator']:>20s} K={row['iw']:<5d} {row['time_ms']:8.2f} ms "
            f"peak {row['peak_memory_mib']:8.1f} MiB (+{row['step_memory_mib']:.1f} MiB during the steps)")
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        reference = table[table["estimator"] == "reinforce"].set_index(["model", "iw", "kind"])["time_ms"]
        table["time_vs_reinforce"] = [
            row.time_ms / reference.get((row.model, row.iw, row.kind), math.nan) for row in table.itertuples()]
    return table
