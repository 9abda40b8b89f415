"""Part of ``scripts/gpu_check.sh``: the queue places 2 workers on one device and both runs succeed.

    python scripts/gpu_check_queue.py --device cuda   (cpu: two CPU workers, for a dry run)

Writes a spec of two short Gaussian-toy runs to a temporary folder, runs ``manager.py`` with
``--processes 2`` on one GPU (``--max_gpus 1``; on cpu ``--max_gpus 0``), then reads the queue:
prints one line ``queue: 2 runs succeeded on <devices>, overlapping <s> s`` and exits 0, or
says what failed and exits 1.
"""
import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from ovis.cli import ArgumentParser  # noqa: E402
from ovis.queue.view import read_runs  # noqa: E402

SPEC = {
    "description": "gpu_check.sh: two short runs that the queue places on one device",
    "args": ["--dataset gaussian-toy --bs 100 --lr 0.001 --epochs 5 --eval_freq 5 --grad_key A,b --grad_bs 100 "
             "--grad_samples 10 --estimator pathwise-iwae --iw 50 --silent"],
    "parameters": {"seed": [1, 2]},
}


def main() -> int:
    parser = ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="cuda", help="cuda: 2 workers on one GPU; cpu: 2 CPU workers")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        spec_path = os.path.join(root, "gpu-check-queue.json")
        with open(spec_path, "w") as f:
            json.dump(SPEC, f)
        gpus = "0" if args.device == "cpu" else "1"
        command = [sys.executable, os.path.join(REPO, "manager.py"), "--exp", spec_path, "--root", root,
                   "--processes", "2", "--max_gpus", gpus]
        result = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        print(result.stdout[-2000:], result.stderr[-2000:], sep="\n")
        runs = read_runs(os.path.join(root, "gpu-check-queue"))
        failed = [f"{r['run_id']}: {r['status']} {r['message']}" for r in runs if r["status"] != "success"]
        if result.returncode != 0 or failed or len(runs) != 2:
            print(f"queue: FAILED (manager.py exit {result.returncode}; {len(runs)} runs; {'; '.join(failed)})")
            return 1
        devices = sorted({r["device"] for r in runs})
        overlap = min(r["finished"] for r in runs) - max(r["started"] for r in runs)
        print(f"queue: 2 runs succeeded on {', '.join(devices)}, overlapping {overlap:.1f} s")
        return 0 if overlap > 0 and len(devices) == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
