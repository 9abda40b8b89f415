"""Do the process settings that ovis gives its runs pay: glibc's heap thresholds
(``M_TRIM_THRESHOLD`` / ``M_MMAP_THRESHOLD``) and OpenMP's passive waits (``OMP_WAIT_POLICY``)?

    OVIS_DATA=../shared/data python benchmarks/malloc.py [--repeats 2] [--steps 50] [--smoke]

Both are environment variables read when a process starts (``ovis.launch``;
``run.py`` sets ``OMP_WAIT_POLICY=PASSIVE`` before importing torch), so every configuration runs
in fresh processes, with and without the setting, alternating to spread the machine's load evenly:

* heap thresholds: by default glibc returns the free memory at the top of its heap to the system
  once it exceeds a dynamically adjusted threshold, so a training step that frees and
  re-allocates its activations may page them in again at every step. Measured: the median
  training step of ``ovis-gamma1`` (SBN 3 x 200, batch 24, K = 5 and 50, one thread;
  benchmarks/targets.md target 1) and the peak resident memory of the binarized-MNIST ``run.py``
  run of target 3 above a process that only imports torch.
* OpenMP waits: threads that wait for work spin (``ACTIVE``) or sleep (``PASSIVE``). Measured: the
  same median step with two threads while a busy process (one spinning Python loop) shares the
  machine, the case the setting is for.

Prints the medians and the relative gain of each setting; the rule of the project (keep a
non-default setting only for a gain above 10% on a stated target) is applied to the result.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from contextlib import contextmanager

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.training.efficiency import MIB, RU_MAXRSS_UNIT  # noqa: E402
from ovis.launch import HEAP_ENVIRONMENT  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONTROLLED = (*HEAP_ENVIRONMENT, "OMP_WAIT_POLICY")  # removed from the inherited environment
# name -> (settings without, with; threads; a busy neighbour; memory measured too)
COMPARISONS = {
    "heap thresholds": ({}, HEAP_ENVIRONMENT, 1, False, True),
    "passive OpenMP waits": ({"OMP_WAIT_POLICY": "ACTIVE"}, {"OMP_WAIT_POLICY": "PASSIVE"}, 2, True, False),
}
RUN_OPTIONS = ["--dataset", "binmnist", "--mini", "--model", "sbm", "--N", "200", "--depth", "3", "--nlayers", "0",
               "--estimator", "ovis-gamma1", "--iw", "5", "--bs", "24", "--epochs", "1", "--eval_freq", "1",
               "--iw_test", "1000", "--max_eval", "100", "--test_bs", "10", "--iw_valid", "100",
               "--grad_samples", "20", "--grad_bs", "24", "--silent", "--threads", "1"]
SMOKE_RUN_OPTIONS = ["--nsteps", "2", "--epochs", "-1", "--iw_test", "2", "--max_eval", "4", "--iw_valid", "2",
                     "--grad_samples", "0", "--N", "8"]
STEP = ("import json, sys; from ovis.training.efficiency import Workload, measure_in_this_process; "
        "print(json.dumps(measure_in_this_process(Workload(**json.loads(sys.argv[1]))).row()['time_ms']))")
GAIN_TO_KEEP = 0.10


def environment(setting: dict) -> dict:
    inherited = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    return {**inherited, "PYTHONPATH": REPO, **setting}


def _peak_mib(command, env) -> float:
    """Peak resident memory (MiB) of ``command`` run as a child with ``env``."""
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO, env=env)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own usage
        if os.waitstatus_to_exitcode(status) != 0:
            log.seek(0)
            raise RuntimeError(f"{' '.join(command[:3])}... failed: {log.read()[-800:].decode()}")
    return usage.ru_maxrss * RU_MAXRSS_UNIT / MIB


def run_memory_growth(setting: dict, data_root, run_options) -> float:
    """Peak RSS of the target-3 run minus the peak RSS of ``import torch`` alone (MiB)."""
    env = environment(setting)
    torch_only = _peak_mib([sys.executable, "-c", "import torch"], env)
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, os.path.join(REPO, "run.py"), *run_options, "--root", root]
        run = _peak_mib(command + (["--data_root", data_root] if data_root else []), env)
    return run - torch_only


def step_time_ms(setting: dict, iw: int, threads: int, args) -> float:
    """Median training-step time of ``ovis-gamma1`` at ``iw`` in a process started with ``setting``."""
    workload = {"model": "sbm", "estimator": "ovis-gamma1", "iw": iw, "batch_size": 24, "data_root": args.data_root,
                "device": "cpu", "threads": threads, "untimed_steps": args.untimed_steps, "steps": args.steps}
    done = subprocess.run([sys.executable, "-c", STEP, json.dumps(workload)], cwd=REPO, env=environment(setting),
                          capture_output=True, text=True, check=True)
    return float(done.stdout.split()[-1])


@contextmanager
def busy_neighbour(active: bool):
    """A process that keeps one core busy while the block runs."""
    process = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if active else None
    try:
        yield
    finally:
        if process is not None:
            process.kill()
            process.wait()


def compare(name: str, args, run_options) -> float:
    """Alternating measurements without and with the setting; prints the medians, returns the best gain."""
    without, with_setting, threads, busy, memory = COMPARISONS[name]
    results = {label: {} for label in ("without", "with")}
    for repeat in range(args.repeats):
        for label, setting in (("without", without), ("with", with_setting)):
            row = results[label]
            with busy_neighbour(busy):
                for iw in (5, 50):
                    row.setdefault(f"K={iw} step ms", []).append(step_time_ms(setting, iw, threads, args))
            if memory:
                row.setdefault("run growth MiB", []).append(run_memory_growth(setting, args.data_root, run_options))
            print(f"{name}, repeat {repeat + 1}, {label:>7s}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in row.items()),
                  flush=True)
    default, candidate = ({k: statistics.median(v) for k, v in results[label].items()} for label in results)
    gains = {key: 1 - candidate[key] / default[key] for key in default}
    for key, gain in gains.items():
        print(f"  {name} {key:>15s}: without {default[key]:8.2f}  with {candidate[key]:8.2f}  gain {gain:+.1%}")
    return max(gains.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data_root", default=None)
    parser.add_argument("--repeats", type=int, default=2, help="alternating measurements per setting")
    parser.add_argument("--untimed_steps", type=int, default=5)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--smoke", action="store_true", help="one repeat of minimal runs (checks that it works)")
    args = parser.parse_args(argv)
    run_options = RUN_OPTIONS + (SMOKE_RUN_OPTIONS if args.smoke else [])
    if args.smoke:
        args.repeats, args.untimed_steps, args.steps = 1, 0, 1
    for name in COMPARISONS:
        gain = compare(name, args, run_options)
        verdict = "KEEP" if gain > GAIN_TO_KEEP else "DROP"
        print(f"{verdict} {name}: best gain {gain:+.1%} ({'above' if gain > GAIN_TO_KEEP else 'not above'} "
              f"{GAIN_TO_KEEP:.0%}){' (smoke run: not a measurement)' if args.smoke else ''}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
