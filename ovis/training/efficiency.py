"""Speed and memory of ``run.py``'s training step (and of its bound evaluation) per estimator
and number of particles K, beside the step's hardware floor.

Each configuration (``Workload``) is measured in a fresh Python process, so that one
configuration's allocator caches and peak memory never leak into the next. Inside it, the
workload becomes a ``run.py`` argument list and goes through ``run.py``'s own set-up
(the environment the queue gives a run, ``RUN_ENVIRONMENT``; ``ovis.training.components``: argument
parsing, determinism, seeding, the components, ``configure_threads``) and its ``Trainer`` (same optimisers and step), in a
temporary run folder; only the data loading is left out of the timings.

* time: ``untimed_steps`` steps, then each of ``steps`` steps timed (CUDA synchronised around
  it), each followed by one timing of the step's bare matrix products (``ovis.analysis.floor``)
  in the same process and threads: medians of both, and their ratio ``time_vs_floor``, which
  holds on a loaded machine where absolute times do not;
* memory: on CUDA ``torch.cuda.max_memory_allocated``; on CPU the peak resident set size
  (``VmHWM``, reset through ``/proc/self/clear_refs`` right before the first step; where that
  is not possible, the process's lifetime peak ``ru_maxrss``). Reported as the process peak and
  as the growth over the footprint before the first step (model, optimiser, data);
* ``threads``: torch's CPU threads during the steps; ``load``: the 1-minute load average of
  the machine when the measurement ended.
"""
import functools
import math
import os
import re
import resource
import sys
import tempfile
import time
from contextlib import contextmanager
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
import torch

from ovis.analysis.floor import describe, evaluation_floor_of, floor_of, synchronise, timed
from ovis.estimators.config import describe_estimator_id, parse_estimator_id
from ovis.estimators.evaluation import BoundEvaluator
from ovis.estimators.registry import family_of, registered_families
from ovis.launch import RUN_ENVIRONMENT

MIB = 2 ** 20
# ru_maxrss is in kilobytes on Linux, in bytes on macOS.
RU_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024
# The paper's models as run.py options: the 3 x 200 linear SBN of Figure 3 and the
# Gaussian VAE of the TVO budget analysis (200 latents, two hidden layers of 200 units).
MODEL_PRESETS = {
    "sbm": {"N": 200, "depth": 3, "nlayers": 0},
    "gaussian-vae": {"N": 200, "hdim": 200, "nlayers": 2, "depth": 1},
}
KINDS = ("train", "evaluate")
# The estimators of the paper's figures; default_estimators adds the other registered families.
PAPER_ESTIMATORS = ("reinforce", "vimco-arithmetic", "ovis-gamma1", "ovis-gamma0", "ovis-S10-exclusive",
                    "tvo-part2-config1", "pathwise-iwae")


def default_estimators() -> str:
    """The paper's estimators, then the example ids without parameters (one per canonical id) of every
    registered family they do not cover that run at ``--mc 1``, as a comma list (an estimator that
    refuses a model is skipped with a message)."""
    covered = {family_of(e).name for e in PAPER_ESTIMATORS}
    others = [e for f in registered_families() if f.name not in covered for e in f.examples
              if not describe_estimator_id(e).parameters and parse_estimator_id(e)[0].min_mc == 1]
    keys = {describe_estimator_id(e).key: e for e in reversed(others)}  # the first spelling of each key
    return ",".join(PAPER_ESTIMATORS + tuple(e for e in others if keys[describe_estimator_id(e).key] == e))


class IncompatibleWorkload(ValueError):
    """The estimator cannot train the model (e.g. a pathwise estimator on the discrete SBN)."""


@dataclass(frozen=True)
class Workload:
    """One measured configuration. ``hparams``: run.py model options overriding the preset;
    ``chunk_size`` bounds the rows per forward pass of ``kind="evaluate"`` (None: run.py's);
    ``threads``: run.py's ``--threads`` (0: its choice, ``configure_threads``)."""
    model: str
    estimator: str
    iw: int
    batch_size: int = 24
    mc: int = 1
    kind: str = "train"
    dataset: str = "binmnist"
    data_root: Optional[str] = None
    device: str = "auto"
    untimed_steps: int = 3
    steps: int = 20
    lr: float = 1e-3
    threads: int = 0
    chunk_size: Optional[int] = None
    seed: int = 1
    compile: bool = False
    hparams: Dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind {self.kind!r}: expected one of {KINDS}")
        if self.iw < 1 or self.mc < 1 or self.batch_size < 1 or self.steps < 1 or self.untimed_steps < 0:
            raise ValueError(f"{self}: iw, mc, batch_size and steps must be >= 1, untimed_steps >= 0")

    def run_arguments(self, root: str) -> List[str]:
        """The ``run.py`` arguments of this workload, run folder under ``root``."""
        options = {"dataset": self.dataset, "model": self.model, "estimator": self.estimator, "iw": self.iw,
                   "mc": self.mc, "bs": self.batch_size, "lr": self.lr, "threads": self.threads,
                   "device": self.device, "seed": self.seed, "root": root, "exp": "efficiency",
                   "grad_samples": 0, **MODEL_PRESETS.get(self.model, {}), **self.hparams}
        if self.data_root:
            options["data_root"] = self.data_root
        if self.estimator == "-":  # evaluation only: any estimator that builds
            options["estimator"] = "reinforce"
        argv = [text for key, value in options.items() for text in (f"--{key}", str(value))]
        return argv + ["--silent", "--compile", "on" if self.compile else "off"]


@dataclass
class Measurement:
    """Step and floor times (``(wall, process CPU)`` milliseconds, one pair per timed step) and
    memory in MiB of one workload."""
    workload: Workload
    device: str
    step_ms: List[Tuple[float, float]]
    floor_ms: List[Tuple[float, float]]
    floor: str
    peak_memory_mib: float
    step_memory_mib: float
    memory_source: str
    threads: int
    load: float

    def row(self) -> Dict:
        wall, cpu = np.asarray(self.step_ms).T  # [steps] x 2
        floor_wall, floor_cpu = np.median(self.floor_ms, 0) if self.floor_ms else (math.nan, math.nan)
        workload = asdict(self.workload)
        workload.pop("hparams")
        return {**workload, "device_used": self.device, "threads_used": self.threads, "load": self.load,
                "time_ms": float(np.median(wall)), "time_ms_p10": float(np.percentile(wall, 10)),
                "time_ms_p90": float(np.percentile(wall, 90)), "cpu_ms": float(np.median(cpu)),
                "cpu_ms_p10": float(np.percentile(cpu, 10)), "cpu_ms_p90": float(np.percentile(cpu, 90)),
                "floor_ms": float(floor_wall), "floor_cpu_ms": float(floor_cpu),
                "time_vs_floor": float(np.median(wall) / floor_wall), "cpu_vs_floor": float(np.median(cpu) / floor_cpu),
                "floor": self.floor, "peak_memory_mib": self.peak_memory_mib,
                "step_memory_mib": self.step_memory_mib, "memory_source": self.memory_source}


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


def training_step(trainer, x: torch.Tensor) -> None:
    """As ``Trainer._train``: one step, then the loss read-back every ``SYNC_EVERY`` steps."""
    trainer._train_step(x)
    if trainer.monitor.full:
        trainer._sync()


def _batches(train, workload: Workload, count: int, device) -> List[torch.Tensor]:
    """``count`` training batches ``[bs, *x_shape]``, drawn before the timings."""
    generator = torch.Generator().manual_seed(workload.seed)
    index = torch.randint(len(train), (count, workload.batch_size), generator=generator)
    return [train.batch(i, generator=generator).to(device) for i in index]


def _build(workload: Workload, root: str):
    """``run.py``'s set-up of the workload (``ovis.training.components``), up to the ``Trainer``."""
    from ovis.run_folder import run_logger
    from ovis.training.arguments import parse_args
    from ovis.training.components import build_components, prepare_process
    from ovis.training.trainer import Trainer

    args = parse_args(workload.run_arguments(root))
    components = prepare_process(args, build_components)
    run_dir = os.path.join(root, "run")
    os.makedirs(run_dir)
    try:
        components.estimator.check_model(components.model)
    except ValueError as error:
        raise IncompatibleWorkload(str(error)) from None
    return Trainer(args, components, run_dir, run_logger(run_dir, silent=True)), components


@contextmanager
def _built(workload: Workload) -> Iterator[Tuple[Any, Any, List[torch.Tensor]]]:
    """``(trainer, components, batches)`` of ``workload`` through run.py's set-up, in a temporary
    run folder (``untimed_steps + steps`` batches); the trainer's recorder is closed afterwards."""
    from ovis.training.arguments import IncompatibleComponents
    with tempfile.TemporaryDirectory() as root:
        try:
            trainer, components = _build(workload, root)
        except IncompatibleComponents as error:
            raise IncompatibleWorkload(str(error)) from None
        try:
            yield trainer, components, _batches(components.datasets.train, workload,
                                                workload.untimed_steps + workload.steps, components.device)
        finally:
            trainer.recorder.close()


def consecutive_step_times(workload: Workload) -> Tuple[List[Tuple[float, float]], float]:
    """run.py's training step of ``workload`` in this process, timed over consecutive steps as a run
    takes them (``measure_in_this_process`` runs the floor's products between the steps, which
    leaves the step's parameters and optimiser state out of the caches): ``(times, first)``, the
    ``(wall, process CPU)`` milliseconds of each timed step and the wall-clock seconds of the
    ``untimed_steps`` first steps (compilation)."""
    with _built(workload) as (trainer, components, batches):
        device = components.device
        trainer.model.train()  # as Trainer._train
        trainer.estimator.train()
        started = time.perf_counter()
        for x in batches[:workload.untimed_steps]:
            training_step(trainer, x)
        synchronise(device)
        first = time.perf_counter() - started
        times = [timed(training_step, device, trainer, x) for x in batches[workload.untimed_steps:]]
    return times, first


def measure_in_this_process(workload: Workload) -> Measurement:
    """Measure ``workload`` here (``measure`` runs this in a fresh process)."""
    with _built(workload) as (trainer, components, batches):
        device = components.device
        floor = None
        if workload.kind == "train":
            trainer.model.train()
            trainer.estimator.train()
            mc, iw = components.estimator.layout
            floor = floor_of(trainer.model, batches[0], mc * iw, components.estimator.reparam)

            step = functools.partial(training_step, trainer)
        else:
            from ovis.training.evaluation import evaluation_threads, torch_threads
            evaluator = (trainer.evaluator(workload.iw) if workload.chunk_size is None
                         else BoundEvaluator(workload.iw, chunk_size=workload.chunk_size,
                                             compiler=trainer.evaluation_compiler))
            trainer.model.eval()
            threads = evaluation_threads(trainer.args)
            floor = _evaluation_floor(trainer.model, evaluator, batches[0], threads)

            def step(x):  # as Trainer._bound, with run.py's evaluation threads
                with torch.no_grad(), torch_threads(threads):
                    evaluator(trainer.model, x)

        memory = _PeakMemory(device)
        memory.start()
        for x in batches[:workload.untimed_steps]:
            step(x)
        times, floor_times = [], []  # (wall, process CPU) milliseconds
        for x in batches[workload.untimed_steps:]:
            times.append(timed(step, device, x))
            if floor is not None:
                floor_times.append(timed(floor.run, device))
        peak = memory.peak()
        threads_used = threads if workload.kind == "evaluate" else torch.get_num_threads()
    return Measurement(workload, str(device), times, floor_times, describe(floor.shapes) if floor else "", peak,
                       peak - memory.baseline, memory.source, threads_used, os.getloadavg()[0])


class _RepeatedFloor:
    """A chunk's ``MatmulFloor`` run once per chunk of the batch, with the evaluation's threads."""

    def __init__(self, floor, chunks: int, threads: int):
        self.floor, self.chunks, self.threads, self.shapes = floor, chunks, threads, floor.shapes

    def run(self) -> None:
        from ovis.training.evaluation import torch_threads
        with torch_threads(self.threads):
            for _ in range(self.chunks):
                self.floor.run()


def _evaluation_floor(model, evaluator, x: torch.Tensor, threads: int) -> Optional[_RepeatedFloor]:
    """The forward products of an evaluation of the batch ``x``: those of one full chunk
    (``evaluation_floor_of``), as many times as the batch has chunks' worth of rows."""
    bound = getattr(evaluator, "bound", evaluator)
    if not isinstance(bound, BoundEvaluator):
        return None
    points, particles = bound.chunk_layout(x.shape[0])
    floor = evaluation_floor_of(model, points, particles, x.device, x.dtype)
    chunks = max(1, round(x.shape[0] * bound.iw / (points * particles)))
    return None if floor is None else _RepeatedFloor(floor, chunks, threads)


def measure(workload: Workload) -> Measurement:
    """Measure ``workload`` in a fresh process (spawned, so CUDA and allocator state start clean)
    with ``RUN_ENVIRONMENT`` (values already set in this process's environment win)."""
    added = {key: value for key, value in RUN_ENVIRONMENT.items() if key not in os.environ}
    os.environ.update(added)
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            return pool.submit(measure_in_this_process, workload).result()
    finally:
        for key in added:
            del os.environ[key]


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
        floor = (f" (floor {row['floor_ms']:.2f} ms, x{row['time_vs_floor']:.2f}; CPU time x{row['cpu_vs_floor']:.2f})"
                 if math.isfinite(row["floor_ms"]) else "")
        log(f"{row['model']:>12s} {row['estimator']:>20s} K={row['iw']:<5d} {row['time_ms']:8.2f} ms{floor} "
            f"peak {row['peak_memory_mib']:8.1f} MiB "
            f"(+{row['step_memory_mib']:.1f} MiB during the steps), {row['threads_used']} thread(s), "
            f"load {row['load']:.1f}")
        rows.append(row)
    table = pd.DataFrame(rows)
    if not table.empty:
        reference = table[table["estimator"] == "reinforce"].set_index(["model", "iw", "kind"])["time_ms"]
        table["time_vs_reinforce"] = [
            row.time_ms / reference.get((row.model, row.iw, row.kind), math.nan) for row in table.itertuples()]
    return table


def with_clock(table: pd.DataFrame, clock: str) -> pd.DataFrame:
    """The table with ``time_ms`` (and its p10 / p90) taken from ``clock``: "cpu" or "wall"."""
    if clock == "wall" or "cpu_ms" not in table:  # CSVs written before the CPU times were measured
        return table
    return table.assign(time_ms=table["cpu_ms"], time_ms_p10=table["cpu_ms_p10"], time_ms_p90=table["cpu_ms_p90"])
