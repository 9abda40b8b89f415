"""run.py --compile: the compiled training step computes what the eager one does."""
from types import SimpleNamespace

import pytest
import torch

from ovis.estimators.config import EXAMPLE_IDS
from ovis.training.arguments import ArgumentError, parse_args
from ovis.training.compilation import (COMPILE_MAX_PARTICLES, COMPILE_MIN_STEPS, compiled_gradient_pass, compiles,
                                       evaluation_compiler, run_guards)
from ovis.training.efficiency import Workload, _build, _batches

# A small SBN on the generated shapes data (8 units, 1 layer), batch 4, K = 3.
SMALL = Workload(model="sbm", estimator="ovis-gamma1", iw=3, batch_size=4, dataset="shapes", device="cpu",
                 threads=1, hparams={"N": 8, "depth": 1})


def _losses_and_parameters(tmp_path, workload: Workload, steps: int = 3):
    trainer, components = _build(workload, str(tmp_path))
    batches = _batches(components.datasets.train, workload, steps, components.device)
    torch.manual_seed(0)
    losses = []
    for x in batches:
        trainer._train_step(x)
        losses.append(trainer.monitor.values[0, trainer.monitor.count - 1].item())
    trainer.recorder.close()
    return losses, [p.detach().clone() for p in trainer.model.parameters()]


def _compiled_run_equals_the_eager_run(tmp_path, workload: Workload):
    """The eager run's parameters; the compiled run's losses and parameters equal them (compile_options:
    the compiled step draws from torch's generator, as the eager one)."""
    eager_losses, eager_parameters = _losses_and_parameters(tmp_path / "eager", workload)
    compiled_losses, compiled_parameters = _losses_and_parameters(
        tmp_path / "compiled", Workload(**{**workload.__dict__, "compile": True}))
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    # three Adam steps of 1e-3 each: inductor's fused kernels round the float32 gradients differently,
    # and Adam's normalisation turns that into up to about 2e-6 where a gradient is near zero
    for compiled, eager in zip(compiled_parameters, eager_parameters):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-5)
    return eager_parameters


@pytest.mark.slow  # torch.compile takes minutes on a loaded 2-core machine
def test_compiled_step_gives_the_eager_losses_and_parameters(tmp_path):
    eager_parameters = _compiled_run_equals_the_eager_run(tmp_path / "first", SMALL)
    assert eager_parameters[0].ne(_losses_and_parameters(tmp_path / "again", SMALL)[1][0]).sum() == 0
    # a second run in the process, of the same shapes but another estimator setting, gets its own program:
    # the guards left out (run_guards) are those on the first run's hyperparameters
    other = Workload(**{**SMALL.__dict__, "estimator": "ovis-gamma0"})
    other_parameters = _compiled_run_equals_the_eager_run(tmp_path / "second", other)
    assert not all(torch.equal(a, b) for a, b in zip(other_parameters, eager_parameters))  # a reuse would show


@pytest.mark.slow  # two compilations (the last chunk of each data point is smaller)
def test_a_compiled_evaluation_gives_the_eager_bound_and_diagnostics():
    from ovis.estimators.evaluation import BoundEvaluator
    from ovis.models import get_model
    torch.manual_seed(0)
    model = get_model("sbm", (1, 6, 6), N=8, depth=2, nlayers=0).eval()
    x = (torch.rand(3, 1, 6, 6) > 0.5).float()
    results = []
    for compiler in (None, evaluation_compiler(torch.device("cpu"))):
        torch.manual_seed(1)  # 50 particles in chunks of 21, 21 and 8 per data point
        results.append(BoundEvaluator(50, chunk_size=64, compiler=compiler)(model, x))
    (eager_loss, eager_diagnostics, eager_output), (loss, diagnostics, output) = results
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=1e-5)
    assert diagnostics.keys() == eager_diagnostics.keys()
    for key, value in eager_diagnostics.items():
        torch.testing.assert_close(diagnostics[key], value, rtol=1e-4, atol=1e-5)
    assert [z.shape for z in output["z"]] == [z.shape for z in eager_output["z"]] == [(3 * 8, 8)] * 2


def test_the_whole_step_keeps_the_guards_on_its_arguments_tensors_and_global_state():
    entries = {  # (dynamo's source name, guard type): kept
        ("x", "TENSOR_MATCH"): True, ("scalars", "TENSOR_MATCH"): True, ("runtime['alpha']", "CONSTANT_MATCH"): True,
        ("runtime", "DICT_KEYS_MATCH"): True, ("", "GRAD_MODE"): True, ("", "DEFAULT_DEVICE"): True,
        ("adam.states[0][0]['exp_avg']", "TENSOR_MATCH"): True,
        ("gradients.__self__.model._modules['observation']._parameters['weight']", "TENSOR_MATCH"): True,
        ("gradients.__self__.estimator.training", "CONSTANT_MATCH"): True,
        ("gradients.__self__.estimator.gamma", "CONSTANT_MATCH"): False,
        ("gradients.__self__.model._modules", "TYPE_MATCH"): False,
        ("G['__import_ovis_dot_estimators_dot_base'].base_diagnostics.__code__", "ID_MATCH"): False,
        ("adam.groups[0]['eps']", "CONSTANT_MATCH"): False,
    }
    kept = run_guards([SimpleNamespace(name=name, guard_type=kind) for name, kind in entries])
    assert dict(zip(entries, kept)) == entries


def test_compile_auto_compiles_long_runs_at_small_k_of_compilable_estimators():
    from ovis.training.arguments import parse_args
    assert parse_args(["--dataset", "shapes", "--model", "sbm"]).compile == "auto"
    assert compiles("auto", COMPILE_MIN_STEPS, COMPILE_MAX_PARTICLES, None)
    assert not compiles("auto", COMPILE_MIN_STEPS - 1, COMPILE_MAX_PARTICLES, None)
    assert not compiles("auto", COMPILE_MIN_STEPS, COMPILE_MAX_PARTICLES + 1, None)
    assert not compiles("auto", COMPILE_MIN_STEPS, 1, "differentiates its backward pass")
    assert compiles("on", 1, 50, None) and not compiles("off", 10 * COMPILE_MIN_STEPS, 1, None)


def test_compile_is_not_part_of_the_run_identity():
    from ovis.training.arguments import parse_args, run_hash
    argv = ["--dataset", "shapes", "--model", "sbm"]
    assert run_hash(parse_args(argv + ["--compile"])) == run_hash(parse_args(argv))



# (the one-layer sbm: for the enumerating estimators and those that take one stochastic layer)
SWEEP_MODELS = [("sbm", {"N": 5, "depth": 2, "nlayers": 0}), ("vae", {"N": 3, "hdim": 8, "nlayers": 1}),
                ("sbm", {"N": 3, "depth": 1, "nlayers": 0})]


def _model_and_estimator(estimator_id: str):
    """The first of ``SWEEP_MODELS`` the estimator accepts, and the estimator at its smallest mc."""
    from ovis.estimators.config import parse_estimator_id
    from ovis.models import get_model
    Estimator, config = parse_estimator_id(estimator_id)
    for name, hparams in SWEEP_MODELS:
        torch.manual_seed(0)
        model = get_model(name, (1, 6, 6), **hparams)
        estimator = Estimator(mc=max(1, Estimator.min_mc), iw=3, x_shape=(1, 6, 6), **config)
        try:
            estimator.check_model(model)
        except ValueError:
            continue
        return model, estimator
    raise AssertionError(f"{estimator_id} accepts none of {SWEEP_MODELS}")


def _gradients_at_changing_batch_sizes(estimator_id: str, compiled: str):
    """Losses and model gradients of calls at batch sizes 4, 4, 3, 2 (the third recompiles at a
    symbolic batch size, as the last batch of an epoch does in run.py), on seeded streams.
    ``compiled``: "" (eager), "forward" (the estimator call compiled), "gradient pass" (forward
    and backward pass compiled together, run.py --compile's fallback) or "gradients" (forward pass
    and ``autograd.grad`` compiled together, as in run.py --compile's whole step)."""
    torch._dynamo.reset()
    model, estimator = _model_and_estimator(estimator_id)
    parameters = list(model.parameters())

    def gradient_pass(call):  # x -> the loss; the gradients of its batch mean in .grad
        def run(x):
            loss, _, _ = call(model, x)
            loss.mean().backward()
            return loss.detach()
        return run

    def gradients(call):  # x -> the loss and the gradients of its batch mean
        def run(x):
            loss, _, _ = call(model, x)
            return loss.detach(), torch.autograd.grad(loss.mean(), parameters, allow_unused=True)
        return run

    compiled_call = torch.compile(estimator)
    # the fallback, where the gradient pass breaks the graph (nvil), is run.py's: the compiled call
    cpu = torch.device("cpu")
    step = {"": estimator, "forward": compiled_call,
            "gradient pass": compiled_gradient_pass(gradient_pass(estimator), cpu, gradient_pass(compiled_call)),
            "gradients": compiled_gradient_pass(gradients(estimator), cpu, gradients(compiled_call))}[compiled]
    results = []
    for call, bs in enumerate((4, 4, 3, 2)):
        x = (torch.rand(bs, 1, 6, 6, generator=torch.Generator().manual_seed(call)) > 0.5).float()
        torch.manual_seed(10 + call)
        if compiled == "gradient pass":
            loss = step(x)
            gradients = [None if p.grad is None else p.grad.clone() for p in parameters]
            model.zero_grad(set_to_none=True)
        elif compiled == "gradients":
            loss, gradients = step(x)
        else:
            loss, _, _ = step(model, x)
            gradients = torch.autograd.grad(loss.mean(), parameters, allow_unused=True)
        results.append((loss.detach(), gradients))
    return results


@pytest.mark.slow  # about 15 s per estimator and mode on 2 cores
@pytest.mark.parametrize("compiled", ["forward", "gradient pass", "gradients"])
@pytest.mark.parametrize("estimator_id", EXAMPLE_IDS)
def test_every_compilable_estimator_compiles_to_its_eager_gradients(estimator_id, compiled, monkeypatch):
    """An estimator with a ``compile_problem`` (dynamic-rebar, relax, the double-cv and rodeo ids) is
    refused by ``--compile on`` instead (``tests/training/test_run_options.py``). Found by this test:
    NVIL's running statistics, updated inside the compiled graph, gave 20% different phi gradients,
    and the noise samplers failed to trace at a symbolic batch size."""
    estimator = _model_and_estimator(estimator_id)[1]
    if estimator.compile_problem:
        with pytest.raises(ArgumentError, match="drop --compile"):
            parse_args(["--dataset", "binmnist", "--model", "sbm", "--depth", "1", "--nlayers", "0", "--estimator",
                        estimator_id, "--mc", str(estimator.mc), "--iw", "2", "--compile", "on"])
        return
    import torch._inductor.config as inductor
    monkeypatch.setattr(inductor, "fallback_random", True)
    eager = _gradients_at_changing_batch_sizes(estimator_id, "")
    for (eager_loss, eager_gradients), (compiled_loss, compiled_gradients) in zip(
            eager, _gradients_at_changing_batch_sizes(estimator_id, compiled)):
        torch.testing.assert_close(compiled_loss, eager_loss, rtol=1e-5, atol=1e-4)
        for a, b in zip(compiled_gradients, eager_gradients):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item() + 1e-6)
