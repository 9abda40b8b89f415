"""Checkpoints of a training run: everything needed to continue it exactly where it stopped.

``checkpoint.pt`` holds the model, every optimiser, the estimator (neural baseline), the
training position (step, epoch, batch within the epoch), the best test score, the online
training averages and the states of every global random number generator (torch CPU and
CUDA, numpy, Python). Schedules and the data order are functions of the position and the seed
(``ovis.training.schedules``, ``ovis.training.data``), so they need no state of their own.

Files are written atomically (``ovis.files.atomic_open``: temporary file, fsync, rename), so a
run killed while saving keeps the previous checkpoint; the next save removes the temporary file
such a kill left. They load with ``torch.load(weights_only=True)``: only tensors and
plain Python containers are stored.
"""
import os
import random
from typing import Dict, Optional

import numpy as np
import torch

from ovis.files import atomic_open, remove_stale_temporaries

CHECKPOINT_FILE = "checkpoint.pt"
MODEL_FILE = "model.pt"


def rng_state(device: torch.device) -> Dict:
    """The state of every global generator the training loop draws from."""
    kind, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
        "python": random.getstate(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"], numpy_state["cached_gaussian"]))
    random.setstate(_as_tuples(state["python"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _as_tuples(value):
    """``random.setstate`` wants the nested tuples that serialisation may turn into lists."""
    return tuple(_as_tuples(v) for v in value) if isinstance(value, (list, tuple)) else value


def _atomic_save(obj, path: str) -> None:
    remove_stale_temporaries(path)  # one writer per run folder: any temporary is a killed save's
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def save_checkpoint(run_dir: str, checkpoint: Dict) -> None:
    _atomic_save(checkpoint, os.path.join(run_dir, CHECKPOINT_FILE))


def load_checkpoint(run_dir: str, map_location: Optional[torch.device] = None) -> Optional[Dict]:
    """The run's checkpoint, or None when there is none."""
    path = os.path.join(run_dir, CHECKPOINT_FILE)
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location=map_location, weights_only=True)


def has_checkpoint(run_dir: str) -> bool:
    return os.path.exists(os.path.join(run_dir, CHECKPOINT_FILE))


def save_model(run_dir: str, model: torch.nn.Module) -> None:
    _atomic_save(model.state_dict(), os.path.join(run_dir, MODEL_FILE))


def load_model(run_dir: str, model: torch.nn.Module, map_location: Optional[torch.device] = None) -> bool:
    """Load ``model.pt`` (the best model) into ``model``; False when it does not exist."""
    path = os.path.join(run_dir, MODEL_FILE)
    if not os.path.exists(path):
        return False
    model.load_state_dict(torch.load(path, map_location=map_location, weights_only=True))
    return True
