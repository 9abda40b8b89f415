"""A stand-in for run.py with the same contract (DESIGN.md section 5), fast and observable.

It counts ``--steps`` steps of ``--sleep`` seconds, saving a checkpoint after every step; with
``--resume`` it continues from the checkpoint. SIGINT/SIGTERM save the checkpoint and exit with
130 after writing ``Aborted by User.``; ``--fail_at STEP`` raises (exit 1, ``Failed.`` marker) a
RuntimeError, or an exception of the class name ``--fail_with``; ``--exhaust_memory_at STEP``
lowers its RLIMIT_AS to 64 MB above its current size and allocates 1 GB (MemoryError);
every executed step is appended to ``steps.log`` and every start to the ``--ledger`` file, so
tests can check that runs executed exactly once and resumed where they stopped.
"""
import argparse
import json
import os
import resource
import signal
import sys
import time
import traceback

from ovis import records


def exhaust_memory() -> None:
    """A MemoryError as a run under a small address-space limit meets it."""
    with open("/proc/self/statm") as f:
        size = int(f.read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), resource.getrlimit(resource.RLIMIT_AS)[1]))
    bytearray(1 << 30)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--fail_at", type=int, default=-1)
    parser.add_argument("--fail_with", default="RuntimeError")
    parser.add_argument("--exhaust_memory_at", type=int, default=-1)
    parser.add_argument("--ledger", default="")
    parser.add_argument("--value", default="")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--flag", action="store_true")
    parser.add_argument("--exp", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--data_root", required=True)
    parser.add_argument("--run_id", required=True)
    parser.add_argument("--resume", action="store_true")
    args = parser.parse_args()

    run_dir = os.path.join(args.root, args.exp, args.run_id)
    os.makedirs(run_dir, exist_ok=True)
    checkpoint = os.path.join(run_dir, "checkpoint.json")
    step = 0
    if args.resume and os.path.exists(checkpoint):
        with open(checkpoint) as f:
            step = json.load(f)["step"]

    def save() -> None:
        with open(checkpoint + ".tmp", "w") as f:
            json.dump({"step": step}, f)
        os.replace(checkpoint + ".tmp", checkpoint)

    stop = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: stop.append(signum))
    if args.ledger:
        with open(args.ledger, "a") as f:
            f.write(f"{args.run_id} {os.getpid()} start_step={step}\n")
    print(f"pid {os.getpid()} CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')} argv={sys.argv[1:]}", flush=True)
    try:
        while step < args.steps:
            if stop:
                save()
                records.write_outcome(run_dir, records.ABORTED, f"signal {stop[0]} at step {step}")
                return 130
            if step == args.fail_at:
                raise type(args.fail_with, (RuntimeError,), {})(f"planned failure at step {step}")
            if step == args.exhaust_memory_at:
                exhaust_memory()
            time.sleep(args.sleep)
            step += 1
            with open(os.path.join(run_dir, "steps.log"), "a") as f:
                f.write(f"{step}\n")
            save()
    except Exception as error:
        records.write_outcome(run_dir, records.FAILED, f"{error}\n{traceback.format_exc()}")
        print(traceback.format_exc(), file=sys.stderr)
        return 1
    records.write_outcome(run_dir, records.SUCCESS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
