"""``ovis.training.optim.Adam`` equals ``torch.optim.Adam`` step for step, its state dict is
interchangeable with torch's, and it never imports ``torch._dynamo``."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from ovis.training.optim import Adam

STEPS = 30
TOLERANCE = 1e-6


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _step(model: nn.Module, optimizer, seed: int) -> None:
    """A gradient step on a seeded batch; the last bias gets no gradient on odd seeds (its
    step count then lags behind the other parameters', as in torch)."""
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 6, generator=generator), torch.randn(8, 3, generator=generator)
    loss = (model(x) - y).pow(2).mean()
    loss.backward()
    if seed % 2:
        model[2].bias.grad = None
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _assert_same_parameters(model: nn.Module, reference: nn.Module) -> None:
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=TOLERANCE, msg=name)


@pytest.mark.parametrize("options", [{}, {"lr": 3e-2, "betas": (0.5, 0.9), "eps": 1e-4}])
def test_steps_equal_torch_adam(options):
    model, reference = _model(), _model()
    optimizer = Adam(model.parameters(), **options)
    reference_optimizer = torch.optim.Adam(reference.parameters(), **options)
    for seed in range(STEPS):
        _step(model, optimizer, seed)
        _step(reference, reference_optimizer, seed)
        _assert_same_parameters(model, reference)
    assert any((p - q).abs().max() > 0 for p, q in zip(model.parameters(), _model().parameters()))


def test_parameter_groups_and_learning_rate_changes_equal_torch_adam():
    model, reference = _model(), _model()

    def groups(m):
        return [{"params": m[0].parameters(), "lr": 1e-2}, {"params": m[2].parameters(), "betas": (0.8, 0.99)}]

    optimizer, reference_optimizer = Adam(groups(model), lr=5e-3), torch.optim.Adam(groups(reference), lr=5e-3)
    for seed in range(STEPS):
        if seed == STEPS // 2:  # a learning-rate schedule halves every group's lr
            for opt in (optimizer, reference_optimizer):
                for group in opt.param_groups:
                    group["lr"] *= 0.5
        _step(model, optimizer, seed)
        _step(reference, reference_optimizer, seed)
        _assert_same_parameters(model, reference)


@pytest.mark.parametrize("save_with_torch", [True, False])
def test_state_dicts_are_interchangeable_with_torch_adam(save_with_torch):
    """Train a few steps with one implementation, resume with the other, compare with an unbroken run."""
    unbroken, resumed = _model(), _model()
    unbroken_optimizer = torch.optim.Adam(unbroken.parameters(), lr=1e-2)
    first = (torch.optim.Adam if save_with_torch else Adam)(resumed.parameters(), lr=1e-2)
    for seed in range(STEPS // 2):
        _step(unbroken, unbroken_optimizer, seed)
        _step(resumed, first, seed)
    saved = first.state_dict()
    second = (Adam if save_with_torch else torch.optim.Adam)(resumed.parameters(), lr=1.0)
    second.load_state_dict(saved)
    assert second.param_groups[0]["lr"] == 1e-2
    for seed in range(STEPS // 2, STEPS):
        _step(unbroken, unbroken_optimizer, seed)
        _step(resumed, second, seed)
        _assert_same_parameters(resumed, unbroken)


def test_state_dict_layout_matches_torch_adam():
    model, reference = _model(), _model()
    optimizer, reference_optimizer = Adam(model.parameters()), torch.optim.Adam(reference.parameters())
    for seed in range(3):
        _step(model, optimizer, seed)
        _step(reference, reference_optimizer, seed)
    ours, theirs = optimizer.state_dict(), reference_optimizer.state_dict()
    assert sorted(ours["state"]) == sorted(theirs["state"]) == [0, 1, 2, 3]
    for index, state in theirs["state"].items():
        assert set(ours["state"][index]) == set(state)
        assert ours["state"][index]["step"].item() == state["step"].item()  # 2 for the last bias, else 3
    assert ours["param_groups"][0]["params"] == theirs["param_groups"][0]["params"]


def test_load_rejects_a_state_of_other_parameters():
    optimizer = Adam(_model().parameters())
    other = Adam([nn.Parameter(torch.zeros(2))])
    with pytest.raises(ValueError, match="groups of"):
        optimizer.load_state_dict(other.state_dict())


@pytest.mark.parametrize("options, message", [({"lr": -1.0}, "lr"), ({"betas": (0.9, 1.0)}, "betas"),
                                              ({"eps": -1e-8}, "eps")])
def test_bad_hyperparameters_are_refused(options, message):
    with pytest.raises(ValueError, match=message):
        Adam(_model().parameters(), **options)


def test_empty_parameter_list_is_refused():
    with pytest.raises(ValueError, match="empty"):
        Adam([])


def test_a_step_does_not_import_dynamo():
    code = ("import sys, torch\nfrom ovis.training.optim import Adam\n"
            "p = torch.nn.Parameter(torch.ones(3)); opt = Adam([p]); p.grad = torch.ones(3)\n"
            "opt.step(); opt.zero_grad(); opt.load_state_dict(opt.state_dict())\n"
            "print('torch._dynamo' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"


def test_load_refuses_a_torch_state_with_options_it_does_not_implement():
    model = _model()
    reference = torch.optim.Adam(model.parameters(), weight_decay=0.1)
    with pytest.raises(ValueError, match="weight_decay"):
        Adam(model.parameters()).load_state_dict(reference.state_dict())
