"""Check the speed and memory targets of ``benchmarks/targets.md`` on this machine.

    OVIS_DATA=../shared/data python benchmarks/check_targets.py [--device cpu] [--threads 1] [--skip run]

Prints every measurement (``benchmarks/floor.py``'s ratio table), then one line per target
(PASS / FAIL with the measured value); exits with 1 when a target is missed. Speed targets are
ratios to the step's hardware floor measured in the same process and threads, so they hold on a
loaded machine; absolute times and memory depend on the machine.
"""
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from typing import List

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from floor import SUITES, add_options, markdown, ratio_table  # noqa: E402

from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list  # noqa: E402
from ovis.training.efficiency import (MIB, RU_MAXRSS_UNIT, Workload,  # noqa: E402
                                      efficiency_table)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP_VS_FLOOR = {5: 2.5, 50: 1.3}  # ovis-gamma1 (SBN), pathwise-iwae and dreg (Gaussian VAE)
FLOOR_TARGETS = {"sbm": ("ovis-gamma1",), "gaussian-vae": ("pathwise-iwae", "dreg")}
RELATIVE_TO_REFERENCE = 1.3
RUN_GROWTH_MIB = 150.0  # peak RSS above that of `import torch` alone
EVALUATION_IW, EVALUATION_BS, EVALUATION_CHUNK = 5000, 10, 10000
EVALUATION_GROWTH_RATIO = 1.5  # memory growth at K = 5000 over that at K = 1000 (one chunk)


@dataclass
class Target:
    name: str
    passed: bool
    measured: str


def speed_targets(args) -> List[Target]:
    table = ratio_table(args.models, sorted(STEP_VS_FLOOR), args)
    print()
    print(markdown(table))
    targets = []
    for row in table.itertuples():
        limit = STEP_VS_FLOOR[row.iw]
        if row.estimator in FLOOR_TARGETS.get(row.model, ()):
            targets.append(Target(f"{row.model} {row.estimator} K={row.iw}: step / floor <= {limit}",
                                  row.step_vs_floor <= limit, f"{row.step_vs_floor:.2f} ({row.cpu_ms:.2f} ms)"))
    for model, group in table.groupby("model"):
        worst = group.loc[group["vs_reference"].idxmax()]
        targets.append(Target(f"{model}: every estimator within {RELATIVE_TO_REFERENCE}x of {SUITES[model][0]} "
                              f"(step / floor) at the same K", worst["vs_reference"] <= RELATIVE_TO_REFERENCE,
                              f"worst {worst['estimator']} at K={worst['iw']}: {worst['vs_reference']:.2f}x"))
    return targets


def evaluation_target(args) -> List[Target]:
    """L_5000 of a test batch with a fixed chunk: the memory must not grow with K."""
    rows = efficiency_table([Workload(model="sbm", estimator="-", kind="evaluate", iw=k, batch_size=EVALUATION_BS,
                                      chunk_size=EVALUATION_CHUNK, data_root=args.data_root, device=args.device,
                                      threads=args.threads, untimed_steps=0, steps=1)
                             for k in (EVALUATION_IW // 5, EVALUATION_IW)]).set_index("iw")["step_memory_mib"]
    small, large = rows[EVALUATION_IW // 5], rows[EVALUATION_IW]
    return [Target(f"K={EVALUATION_IW} evaluation, batch {EVALUATION_BS}, chunks of {EVALUATION_CHUNK} rows: memory "
                   f"growth < {EVALUATION_GROWTH_RATIO}x that of K={EVALUATION_IW // 5} (a single chunk)",
                   large < EVALUATION_GROWTH_RATIO * small,
                   f"{large:.0f} MiB (K={EVALUATION_IW // 5}: {small:.0f} MiB)")]


def run_target(args) -> List[Target]:
    """A short binarized-MNIST SBN run through run.py, evaluation and gradient analysis
    included; peak resident memory of the child process above that of ``import torch``."""
    torch_only = subprocess.run([sys.executable, "-c", "import resource, torch; "
                                 "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"],
                                capture_output=True, text=True, check=True)
    torch_peak = int(torch_only.stdout) * RU_MAXRSS_UNIT / MIB
    with tempfile.TemporaryDirectory() as root:
        command = [sys.executable, os.path.join(REPO, "run.py"), "--dataset", "binmnist", "--mini", "--model", "sbm",
                   "--N", "200", "--depth", "3", "--nlayers", "0", "--estimator", "ovis-gamma1", "--iw", "5",
                   "--bs", "24", "--epochs", "1", "--eval_freq", "1", "--iw_test", "1000", "--max_eval", "100",
                   "--test_bs", "10", "--iw_valid", "100", "--grad_samples", "20", "--grad_bs", "24",
                   "--root", root, "--exp", "benchmark", "--device", args.device, "--silent"]
        if args.data_root:
            command += ["--data_root", args.data_root]
        log_path = os.path.join(root, "output.log")
        with open(log_path, "w") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
            # wait4 gives this child's own resource usage (not that of earlier measurements).
            _, status, usage = os.wait4(process.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            with open(log_path) as log:
                return [Target("binarized-MNIST run.py run", False,
                               f"exit {os.waitstatus_to_exitcode(status)}: {log.read()[-500:]}")]
    growth = usage.ru_maxrss * RU_MAXRSS_UNIT / MIB - torch_peak
    return [Target(f"binarized-MNIST run (SBN 3x200, --mini, 1 epoch): peak RSS growth above import torch "
                   f"< {RUN_GROWTH_MIB:.0f} MiB", growth < RUN_GROWTH_MIB,
                   f"{growth:.0f} MiB (import torch alone: {torch_peak:.0f} MiB)")]


CHECKS: dict = {"speed": speed_targets, "evaluation": evaluation_target, "run": run_target}


def main() -> int:
    parser = add_options(ArgumentParser(description=__doc__, formatter_class=ExamplesHelpFormatter))
    parser.add_argument("--models", type=comma_list, default="sbm,gaussian-vae", help="models of the speed targets")
    parser.add_argument("--skip", type=comma_list, default="", help=f"comma-separated checks to skip: {', '.join(CHECKS)}")
    args = parser.parse_args()
    targets: List[Target] = []
    for name, check in CHECKS.items():
        if name not in args.skip:
            targets += check(args)
    print()
    for target in targets:
        print(f"{'PASS' if target.passed else 'FAIL'}  {target.name}: {target.measured}")
    return 0 if all(t.passed for t in targets) else 1


if __name__ == "__main__":
    sys.exit(main())
