"""Does keeping freed heap memory (glibc ``M_TRIM_THRESHOLD`` / ``M_MMAP_THRESHOLD``) pay?

    OVIS_DATA=../shared/data python benchmarks/malloc.py [--repeats 2] [--steps 50]

By default glibc returns the free memory at the top of its heap to the system once it exceeds a
dynamically adjusted threshold, so a training step that frees and re-allocates its activations may
page them in again at every step. Fixed thresholds keep that memory. They are set through glibc's
environment variables ``MALLOC_TRIM_THRESHOLD_`` and ``MALLOC_MMAP_THRESHOLD_`` (read at process
start), so every configuration runs in fresh processes, with and without the variables, alternating
to spread the machine's load evenly:

* step time: ``ovis.analysis.efficiency`` (median training step of ``ovis-gamma1``, SBN 3 x 200,
  batch 24, K = 5 and 50; benchmarks/targets.md target 1);
* memory: the binarized-MNIST ``run.py`` run of target 3, peak resident memory growth above a
  process that only imports torch (the new memory definition of benchmarks/targets.md).

Prints the medians and the relative gain; the rule of the project (keep a hand-written or
non-default setting only for a gain above 10% on a stated target) is applied to the result.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.analysis.efficiency import MIB, RU_MAXRSS_UNIT, Workload, measure  # noqa: E402
from ovis.training.malloc import HEAP_ENVIRONMENT  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
THRESHOLDS = HEAP_ENVIRONMENT
SETTINGS = {"glibc default": {}, "fixed thresholds": THRESHOLDS}
RUN_OPTIONS = ["--dataset", "binmnist", "--mini", "--model", "sbm", "--N", "200", "--depth", "3", "--nlayers", "0",
               "--estimator", "ovis-gamma1", "--iw", "5", "--bs", "24", "--epochs", "1", "--eval_freq", "1",
               "--iw_test", "1000", "--max_eval", "100", "--test_bs", "10", "--iw_valid", "100",
               "--grad_samples", "20", "--grad_bs", "24", "--silent", "--threads", "1"]
GAIN_TO_KEEP = 0.10


def _peak_mib(command, env) -> float:
    """Peak resident memory (MiB) of ``command`` run as a child with ``env``."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own usage
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise RuntimeError(f"{' '.join(command[:3])}... failed: {log.read()[-800:].decode()}")
    return usage.ru_maxrss * RU_MAXRSS_UNIT / MIB


def run_memory_growth(setting: dict, data_root) -> float:
    """Peak RSS of the target-3 run minus the peak RSS of ``import torch`` alone (MiB)."""
    inherited = {key: value for key, value in os.environ.items() if key not in THRESHOLDS}
    env = {**inherited, "PYTHONPATH": REPO, **setting}
    torch_only = _peak_mib([sys.executable, "-c", "import torch"], env)
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, os.path.join(REPO, "run.py"), *RUN_OPTIONS, "--root", root]
        run = _peak_mib(command + (["--data_root", data_root] if data_root else []), env)
    return run - torch_only


def step_time_ms(setting: dict, iw: int, args) -> float:
    """Median training-step time of ``ovis-gamma1`` at ``iw`` (a spawned process inherits the
    environment, and glibc reads the variables when that process starts)."""
    saved = {key: os.environ.pop(key, None) for key in THRESHOLDS}
    os.environ.update(setting)
    try:
        workload = Workload(model="sbm", estimator="ovis-gamma1", iw=iw, batch_size=24, data_root=args.data_root,
                            device="cpu", threads=1, warmup=args.warmup, steps=args.steps)
        return measure(workload).row()["time_ms"]
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per setting")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    results = {name: {"K=5 step ms": [], "K=50 step ms": [], "run growth MiB": []} for name in SETTINGS}
    for repeat in range(args.repeats):
        for name, setting in SETTINGS.items():
            row = results[name]
            row["K=5 step ms"].append(step_time_ms(setting, 5, args))
            row["K=50 step ms"].append(step_time_ms(setting, 50, args))
            row["run growth MiB"].append(run_memory_growth(setting, args.data_root))
            print(f"repeat {repeat + 1} {name:>16s}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in row.items()),
                  flush=True)
    default, fixed = ({k: statistics.median(v) for k, v in results[name].items()} for name in SETTINGS)
    print("\nmedians (lower is better; gain = 1 - fixed / default)")
    gains = {}
    for key in default:
        gains[key] = 1 - fixed[key] / default[key]
        print(f"  {key:>15s}: default {default[key]:8.2f}  fixed thresholds {fixed[key]:8.2f}  gain {gains[key]:+.1%}")
    best = max(gains, key=gains.get)
    keep = gains[best] > GAIN_TO_KEEP
    print(f"\n{'KEEP' if keep else 'DROP'} the fixed thresholds: best gain {gains[best]:+.1%} on {best} "
          f"({'above' if keep else 'not above'} {GAIN_TO_KEEP:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
