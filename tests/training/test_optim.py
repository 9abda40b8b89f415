"""``ovis.training.optim``: ``--optimizer`` names every usable ``torch.optim`` optimiser, Adam runs in
its fused kernel where the device has one, and a resumed optimiser continues exactly like an
unbroken one, also from a state saved without the fused kernel (ovis's earlier hand-written Adam
saved ``torch.optim.Adam``'s layout with ``fused: None``)."""
import pytest
import torch
from torch import nn

from ovis.training.arguments import build_parser
from ovis.training.optim import OPTIMIZERS, load_optimizer_state, make_optimizer

STEPS = 20


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3))


def _step(model: nn.Module, optimizer, seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    x, y = torch.randn(8, 6, generator=generator), torch.randn(8, 3, generator=generator)  # [8, 6], [8, 3]
    (model(x) - y).pow(2).mean().backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def test_the_original_choices_and_other_torch_optimisers_are_offered():
    assert {"sgd", "adam", "adamax", "rmsprop", "adamw", "nadam"} <= set(OPTIMIZERS)
    assert "lbfgs" not in OPTIMIZERS  # needs a closure
    assert build_parser().parse_args(["--optimizer", "adamw"]).optimizer == "adamw"
    assert build_parser().parse_args([]).optimizer == "adam"


def test_an_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match="unknown optimiser 'adamm': choose one of .*adam,"):
        make_optimizer("adamm", _model().parameters(), lr=1e-3)


def test_adam_is_torch_adam_in_its_fused_kernel_where_the_device_has_one():
    optimizer = make_optimizer("adam", _model().parameters(), lr=3e-4)
    assert type(optimizer) is torch.optim.Adam and optimizer.param_groups[0]["lr"] == 3e-4
    try:
        torch.optim.Adam(_model().parameters(), fused=True)
        fused_here = True
    except RuntimeError:
        fused_here = False
    assert bool(optimizer.param_groups[0]["fused"]) == fused_here
    assert make_optimizer("adamax", _model().parameters(), lr=1e-3).param_groups[0].get("fused") is None


@pytest.mark.parametrize("name", ["adam", "sgd", "rmsprop"])
@pytest.mark.parametrize("saved_fused", [None, True])
def test_a_resumed_optimiser_continues_like_an_unbroken_one(name, saved_fused):
    unbroken, resumed = _model(), _model()
    unbroken_optimizer = make_optimizer(name, unbroken.parameters(), lr=1e-2)
    first = make_optimizer(name, resumed.parameters(), lr=1e-2)
    for seed in range(STEPS // 2):
        _step(unbroken, unbroken_optimizer, seed)
        _step(resumed, first, seed)
    saved = first.state_dict()
    for group in saved["param_groups"]:  # None: as the earlier hand-written Adam saved it
        group["fused"] = saved_fused if "fused" in group else None
    second = make_optimizer(name, resumed.parameters(), lr=1.0)
    load_optimizer_state(second, saved)
    assert second.param_groups[0]["lr"] == 1e-2
    assert second.param_groups[0].get("fused") == unbroken_optimizer.param_groups[0].get("fused")
    for seed in range(STEPS // 2, STEPS):
        _step(unbroken, unbroken_optimizer, seed)
        _step(resumed, second, seed)
    for p, q in zip(resumed.parameters(), unbroken.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=0)
    assert any((p - q).abs().max() > 0 for p, q in zip(resumed.parameters(), _model().parameters()))
