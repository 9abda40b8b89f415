"""run.py's training step eager, compiled (``--compile``) and captured as a CUDA graph, side by side.

    OVIS_DATA=../shared/data python benchmarks/compiled_step.py [--device cpu] [--iw 5,50] [--repeats 3]

Modes (``ovis.training.compilation``): ``eager``; ``compiled`` (inductor's default mode:
``run.py --compile on``, the whole step as one graph where the optimisers are Adam); ``graph``
(``mode="reduce-overhead"``: the compiled step replayed as CUDA graphs, run.py's ``--compile`` on
CUDA; skipped on a CPU). Each measurement is a fresh process through run.py's set-up and
consecutive steps of ``Trainer._train_step`` (``ovis.training.efficiency.consecutive_step_times``),
pinned to one core on a CPU (``--core``), the modes alternating over ``--repeats``. Printed per
mode: the median step time (process CPU time on a CPU, wall-clock time on CUDA, synchronised), its
ratio to the eager step of the same repeat (median over repeats), the time of the first
``--untimed_steps`` steps (compilation) and the peak memory (CUDA: allocated; CPU: resident set
size) of the process.
"""
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.cli import ArgumentParser, ExamplesHelpFormatter, comma_list  # noqa: E402

MODES = ("eager", "compiled", "graph")


def measure(mode: str, args) -> dict:
    """One mode in this process: step times, the first steps' time and the peak memory."""
    import torch
    from ovis.training import compilation
    from ovis.training.efficiency import Workload, consecutive_step_times
    if mode != "eager":
        wanted = "reduce-overhead" if mode == "graph" else "default"
        compilation.compile_mode = lambda device: wanted  # the mode this measurement is about
    workload = Workload(model="sbm", estimator=args.estimator, iw=args.iw[0], batch_size=args.bs, device=args.device,
                        threads=1, compile=mode != "eager", data_root=args.data_root, steps=args.steps,
                        untimed_steps=args.untimed_steps)
    times, first = consecutive_step_times(workload)
    clock = 0 if args.device.startswith("cuda") else 1  # (wall, process CPU)
    device = torch.device(args.device)
    memory = (torch.cuda.max_memory_allocated(device) if device.type == "cuda"
              else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024) / 2 ** 20
    return {"ms": statistics.median(t[clock] for t in times), "first_s": first, "memory_mib": memory}


def run_mode(mode: str, iw: int, args) -> dict:
    from ovis.launch import RUN_ENVIRONMENT
    command = [sys.executable, os.path.abspath(__file__), "--worker", mode, "--iw", str(iw), "--device", args.device,
               "--estimator", args.estimator, "--steps", str(args.steps), "--untimed_steps", str(args.untimed_steps),
               "--bs", str(args.bs)] + (["--data_root", args.data_root] if args.data_root else [])
    prefix = ["taskset", "-c", str(args.core)] if args.device == "cpu" else []
    done = subprocess.run(prefix + command, env={**RUN_ENVIRONMENT, **os.environ, "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} at K={iw} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = ArgumentParser(description=__doc__, formatter_class=ExamplesHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--estimator", default="ovis-gamma1")
    parser.add_argument("--iw", type=lambda text: comma_list(text, int), default="5,50", help="comma-separated K")
    parser.add_argument("--bs", type=int, default=24, help="batch size")
    parser.add_argument("--repeats", type=int, default=3, help="processes per mode and K (medians are reported)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per process")
    parser.add_argument("--untimed_steps", type=int, default=5, help="first steps (compilation), timed together")
    parser.add_argument("--core", type=int, default=1, help="the CPU core every process is pinned to (CPU)")
    parser.add_argument("--data_root", default=None, help="data directory (default: $OVIS_DATA, then ./data)")
    parser.add_argument("--worker", choices=MODES, help="internal: one measurement in this process")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(args.worker, args)))
        return
    modes = MODES if args.device.startswith("cuda") else MODES[:2]
    if len(modes) < len(MODES):
        print("graph (CUDA graphs, mode='reduce-overhead') needs a CUDA device: skipped")
    print(f"| K | mode | step ms | vs eager | first {args.untimed_steps} steps s | peak memory MiB |")
    print("|---|---|---|---|---|---|")
    for iw in args.iw:
        results = {mode: [] for mode in modes}
        for repeat in range(args.repeats):
            for mode in (modes if repeat % 2 == 0 else modes[::-1]):
                results[mode].append(run_mode(mode, iw, args))
        for mode in modes:
            ratio = statistics.median(r["ms"] / e["ms"] for r, e in zip(results[mode], results["eager"]))
            median = {key: statistics.median(r[key] for r in results[mode]) for key in results[mode][0]}
            print(f"| {iw} | {mode} | {median['ms']:.2f} | {ratio:.2f} | {median['first_s']:.1f} | "
                  f"{median['memory_mib']:.0f} |", flush=True)
    print(f"\n{args.device}, {args.estimator}, batch {args.bs}, load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
