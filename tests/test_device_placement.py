"""Every estimator on every model that accepts it, one training step on torch's ``meta`` device,
and one in float64 with every operation watched.

No GPU runs in CI, but the bugs that break a step on one are device bugs: a tensor made on the
CPU inside the step (a ``torch.tensor(...)``, a ``torch.zeros(n)`` without ``device=``), and a
host synchronisation (``.item()``, ``float(t)``, ``if t:`` on a tensor), which stalls the GPU
at every step. A ``meta`` tensor has a device and a shape but no data: the first mixes a CPU
tensor with meta ones and raises, the second asks for data and raises. The same steps in
float64 (the precision of the exact-gradient checks) must not compute anything in a lower
precision (a ``torch.tensor`` or a buffer made in float32 would, silently). The broken variants
below show all three.
"""
import collections

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ovis.estimators.config import EXAMPLE_IDS, parse_estimator_id
from ovis.estimators.evaluation import BoundEvaluator
from ovis.estimators.score_function import Reinforce
from ovis.models.distributions import CategoricalFamily
from ovis.estimators.blackbox import Loss
from tests.models.test_training_step import MODELS, build
from tests.test_examples import load_example

META = torch.device("meta")


def estimator_for(estimator_id, x, mc=2, iw=3):
    Estimator, config = parse_estimator_id(estimator_id)
    return Estimator(mc=mc, iw=iw, x_shape=tuple(x.shape[1:]), **config)


def accepted_pairs(key):
    """``(model, estimator, x)`` for every estimator id that the model ``key`` accepts."""
    for estimator_id in EXAMPLE_IDS:
        model, x = build(key)
        estimator = estimator_for(estimator_id, x)
        try:
            estimator.check_model(model)
        except ValueError:
            continue  # declared incompatible, with its message (tests/training/test_run_options.py)
        yield estimator_id, model, estimator, x


def meta_step(model, estimator, x):
    """Model and estimator moved to ``meta``: forward, backward, one Adam step; the loss and
    every parameter's gradient must be meta tensors."""
    model, estimator = model.to(META), estimator.to(META)
    x = torch.empty(x.shape, dtype=x.dtype, device=META)
    parameters = list(model.parameters()) + list(estimator.parameters())
    optimizer = torch.optim.Adam(parameters, lr=1e-3, foreach=True)  # fused Adam has no meta kernel
    loss, diagnostics, _ = estimator(model, x)
    assert loss.device == META and loss.shape == (x.shape[0],)
    loss.mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.device == META, f"{name}: no gradient on the meta device"
    optimizer.step()
    return diagnostics


@pytest.mark.parametrize("key", list(MODELS))
def test_every_accepted_estimator_steps_on_meta(key):
    accepted = []
    for estimator_id, model, estimator, x in accepted_pairs(key):
        diagnostics = meta_step(model, estimator, x)
        placed = {name: value.device for name, value in diagnostics.items() if torch.is_tensor(value)}
        assert set(placed.values()) <= {META}, f"{estimator_id}: diagnostics off the device: {placed}"
        accepted.append(estimator_id)
    assert {"reinforce", "ovis-gamma1", "vimco-arithmetic"} <= set(accepted)


class LowPrecision(TorchDispatchMode):
    """Counts, per operator, the results in a floating type narrower than float64."""

    def __init__(self):
        super().__init__()
        self.operators = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for value in result if isinstance(result, (tuple, list)) else [result]:
            if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float64:
                self.operators[str(func)] += 1
        return result


def float64_step(model, estimator, x):
    """The operators of a forward and backward pass that computed in a narrower type."""
    model, estimator, x = model.double(), estimator.double(), x.double()
    with LowPrecision() as watch:
        loss, _, _ = estimator(model, x)
        loss.mean().backward()
    return dict(watch.operators)


@pytest.mark.parametrize("key", list(MODELS))
def test_every_accepted_estimator_computes_in_float64_throughout(key):
    for estimator_id, model, estimator, x in accepted_pairs(key):
        assert float64_step(model, estimator, x) == {}, estimator_id


@pytest.mark.parametrize("key", list(MODELS))
def test_evaluation_and_prior_samples_on_meta(key):
    model, x = build(key)
    model = model.to(META)
    x = torch.empty(x.shape, dtype=x.dtype, device=META)
    loss, diagnostics, _ = BoundEvaluator(iw=50, chunk_size=64)(model, x)
    assert loss.device == META and loss.shape == (x.shape[0],)
    assert model.sample_from_prior(3)["px"].sample().device == META


def test_black_box_losses_step_on_meta():
    """``ovis.Loss`` on the objects of ``examples/black_box.py`` (binary latents, no ``rsample``),
    for every id it accepts, the sleep phase of ``wake-sleep`` included."""
    example = load_example("black_box")
    accepted = []
    for estimator_id in EXAMPLE_IDS:
        inf_net, gen_model = example.InferenceNetwork(16, 4), example.GenerativeModel(16, 4)
        try:
            loss_fn = Loss(estimator_id, inf_net, gen_model, iw=3, mc=2, x_shape=(16,))
        except ValueError:
            continue  # refused at construction, with the fix (tests/estimators/test_blackbox.py)
        loss_fn = loss_fn.to(META)
        loss = loss_fn(torch.empty(5, 16, device=META))
        loss.backward()
        assert loss.device == META and all(p.grad.device == META for p in inf_net.parameters())
        accepted.append(estimator_id)
    assert {"reinforce", "ovis-gamma1", "vimco-arithmetic", "wake-sleep", "nvil", "tvo"} <= set(accepted)


class CPUZeros(Reinforce):
    """Broken: its control variate is made on the CPU."""

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        return torch.zeros(1)


class HostRead(Reinforce):
    """Broken: reads a value back from the device at every step."""

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        return log_weights.new_zeros(()) + float(bound.mean())


@pytest.mark.parametrize("broken, message", [(CPUZeros, "device"), (HostRead, "meta tensors")])
def test_a_cpu_tensor_or_a_host_read_in_the_step_fails(broken, message):
    model, x = build("sbm")
    estimator = broken(mc=1, iw=3, x_shape=tuple(x.shape[1:]))
    estimator.check_model(model)
    estimator(model, x)  # both work on the CPU
    with pytest.raises(RuntimeError, match=message):
        meta_step(model, estimator, x)


def test_a_float32_tensor_in_a_float64_step_is_found():
    model, x = build("sbm")
    assert float64_step(model, CPUZeros(mc=1, iw=3), x)  # torch.zeros(1): float32, promoted silently
    assert float64_step(*build("sbm")[:1], Reinforce(mc=1, iw=3), x) == {}


def test_categorical_latents_skip_torchs_hidden_argument_check():
    """torch's ``OneHotCategoricalStraightThrough`` validates its inner ``Categorical`` whatever
    ``validate_args`` says (a host read); the family's distribution does not."""
    logits = torch.empty(4, 3, 5, device=META)
    q = CategoricalFamily(5).distribution(logits)
    assert q.sample().shape == (4, 3, 5) and q.expand((2, 4, 3)).batch_shape == (2, 4, 3)
    with pytest.raises(RuntimeError, match="meta tensors"):
        torch.distributions.OneHotCategoricalStraightThrough(logits=logits, validate_args=False)


def test_the_dynamic_structure_models_padded_draws_stay_on_their_device():
    """The geometric model samples row by row on the host (its structure differs per data point)
    but pads the draws, mask and step index on the device of the draws."""
    from ovis.models.dynamic import _padded
    draws, mask, steps = _padded([torch.empty(3, device=META), torch.empty(1, device=META)])
    assert {draws.device, mask.device, steps.device} == {META} and mask.shape == (2, 3)
