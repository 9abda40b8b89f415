"""Synthetic run folders written with ``ovis/records.py``, as run.py leaves them."""
import math
import os
import zlib

import numpy as np
from ovis import records

ESTIMATORS = ("ovis-gamma1", "vimco-arithmetic", "reinforce")
IWS = (5, 50)
SEEDS = (1, 2, 3)
STEPS = tuple(range(0, 2001, 100))


def curve_values(estimator: str, iw: int, seed: int, step: int) -> dict:
    """Deterministic, distinct values per run and step (so aggregates are checkable)."""
    rng = np.random.default_rng([zlib.crc32(estimator.encode()), iw, seed, step])
    progress = 1 - math.exp(-step / 500)
    return {"loss/L_k": -100 + 10 * progress + math.log(iw) + rng.normal(0, 0.3),
            "loss/kl_q_p": 5 + math.log(iw) + rng.normal(0, 0.1),
            "grads/snr": 0.1 * iw ** 0.5 * math.exp(rng.normal(0, 0.2))}


def write_run(exp_dir: str, run_id: str, config: dict, steps=STEPS, outcome=records.SUCCESS, message="",
              values=None) -> str:
    run_dir = os.path.join(exp_dir, run_id)
    os.makedirs(run_dir, exist_ok=True)
    records.write_config(run_dir, config)
    writer = records.MetricsWriter(run_dir)
    for step in steps:
        train = values(step) if values else curve_values(config["estimator"], config["iw"], config["seed"], step)
        writer.write(step, "train", train, epoch=step // 100)
        writer.write(step, "test", {"loss/L_k": train["loss/L_k"] - 1.0}, epoch=step // 100)
    if outcome is not None:
        records.write_outcome(run_dir, outcome, message)
    return run_dir


def read_text(*parts: str) -> str:
    with open(os.path.join(*parts)) as f:
        return f.read()
