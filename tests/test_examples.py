"""The scripts of ``examples/`` run in a reduced mode (few steps) and print a bound that improves."""
import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_example(name):
    spec = importlib.util.spec_from_file_location(f"ovis_example_{name}", os.path.join(ROOT, "examples", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bounds(out, label):
    """The numbers printed after ``label`` on each log line."""
    return [float(value) for value in re.findall(rf"{re.escape(label)}\s+(-?\d+\.\d+)", out)]


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_template_model_example_trains_and_its_bound_improves(tmp_path, capsys):
    torch.set_num_threads(1)  # a small model: threads only stall on a shared machine
    example = load_example("template_model")
    model = example.train(steps=60, batch_size=16, iw=4, lr=3e-3, data_root=str(tmp_path), log_every=30)  # synthetic data
    out = capsys.readouterr().out
    assert "synthetic" in out
    test_bounds = bounds(out, "test L_64")
    assert len(test_bounds) == 2 and test_bounds[1] > test_bounds[0]
    assert isinstance(model, torch.nn.Module)


@pytest.mark.parametrize("options", [["--estimator", "ovis-gamma1"], ["--wake_sleep"]])
def test_black_box_example_bound_improves(capsys, options):
    load_example("black_box").main(options + ["--steps", "60", "--log_every", "30", "--iw", "4"])
    train_bounds = bounds(capsys.readouterr().out, "train L_4")
    assert len(train_bounds) == 2 and train_bounds[1] > train_bounds[0]


def test_dynamic_structure_example_runs_from_the_command_line():
    """The script itself (a subprocess, as a user runs it): every estimator prints its bound,
    finite and below 0 (a log-probability of a binary observation)."""
    command = [sys.executable, os.path.join(ROOT, "examples", "dynamic_structure.py"), "--steps", "20",
               "--log_every", "10", "--estimators", "wake-wake,reinforce"]
    env = dict(os.environ, PYTHONPATH=ROOT)
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("with mc=1, iw=8, batch [8.0, 9.0, 10.0]") == 2
    printed = bounds(result.stdout, "L_8")
    assert len(printed) == 4 and all(math.isfinite(b) and b < 0 for b in printed)
    exact = bounds(result.stdout, "log p(x)")
    assert len(exact) == 4


def test_dynamic_structure_own_sampling_matches_ovis_loss(capsys):
    """Same seed: the hand-written sampling loop + loss_from_log_probs trains exactly as ovis.Loss."""
    example = load_example("dynamic_structure")
    printed = []
    for own_sampling in (False, True):
        example.train("ovis-gamma1", iw=4, steps=10, log_every=5, own_sampling=own_sampling)
        out = capsys.readouterr().out
        printed.append(bounds(out, "L_4") + bounds(out, "log p(x)"))
    assert len(printed[0]) == 4 and printed[0] == printed[1]


def test_dynamic_structure_own_sampling_draws_the_estimators_particle_shape():
    """``--own_sampling`` with exclusive OVIS-MC (iw + S particles) and reinforce-loo at mc 2: the
    hand-written loop samples ``estimator.particle_shape(bs)``, as the README says."""
    command = [sys.executable, os.path.join(ROOT, "examples", "dynamic_structure.py"), "--steps", "4",
               "--log_every", "2", "--estimators", "ovis-S1-exclusive,reinforce-loo", "--mc", "2", "--own_sampling"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr
    assert len(bounds(result.stdout, "L_8")) == 4 and all(b < 0 for b in bounds(result.stdout, "L_8"))


def test_a_wrong_particle_count_names_the_shape_to_sample():
    from ovis.estimators.config import parse_estimator_id
    Estimator, config = parse_estimator_id("ovis-S1-exclusive")
    estimator = Estimator(mc=1, iw=8, **config)
    assert estimator.particle_shape(3) == (3, 1, 9)
    log_p = torch.zeros(3, 1, 8, requires_grad=True)
    with pytest.raises(ValueError, match=r"draw mc \* n = 9 particles per data point \(estimator.particle_shape"):
        estimator.loss_from_log_probs(log_p, log_p.detach().clone().requires_grad_())
