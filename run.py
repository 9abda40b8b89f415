#!/usr/bin/env python
"""Train one model with one gradient estimator: ``python run.py --help`` lists the options.

Example (3-layer sigmoid belief network on binarized MNIST with OVIS~ gamma=1):

    python run.py --dataset binmnist --model sbm --depth 3 --N 200 --nlayers 0 \\
        --estimator ovis-gamma1 --iw 5 --lr 3e-4 --bs 24 --data_root ../shared/data
"""
import os
import sys

# Threads that wait for work sleep instead of spinning (read when PyTorch loads OpenMP): with
# spinning, a multi-threaded run slows down many times over as soon as another process is busy
# (benchmarks/malloc.py, benchmarks/results.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from ovis.training.arguments import build_parser, validate_args  # noqa: E402
from ovis.apps.train import main  # noqa: E402

# What the queue reads to check a spec's options before queueing (the launch protocol, ovis/launch.py).
__all__ = ["build_parser", "validate_args", "main"]

if __name__ == "__main__":
    sys.exit(main())
