"""``example.py``: a user-defined Bernoulli VAE trained with ovis-gamma1 improves its bound."""
import importlib.util
import os

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def load_example():
    spec = importlib.util.spec_from_file_location("ovis_example", os.path.join(ROOT, "example.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_example_model_trains_and_its_bound_improves(tmp_path, capsys):
    example = load_example()
    model = example.train(steps=60, batch_size=16, iw=4, lr=3e-3, data_root=str(tmp_path), log_every=30)  # synthetic data
    out = capsys.readouterr().out
    assert "synthetic" in out
    bounds = [float(line.split("test L_64")[1].split()[0]) for line in out.splitlines() if line.startswith("step")]
    assert len(bounds) == 2 and bounds[1] > bounds[0]
    assert isinstance(model, torch.nn.Module)
