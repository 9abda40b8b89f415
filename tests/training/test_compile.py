"""run.py --compile: the compiled training step computes what the eager one does."""
import pytest
import torch

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


@pytest.mark.slow  # torch.compile takes minutes on a loaded 2-core machine
def test_compiled_step_gives_the_eager_losses_and_parameters(tmp_path, monkeypatch):
    import torch._inductor.config as inductor
    monkeypatch.setattr(inductor, "fallback_random", True)  # the eager random stream, for the comparison
    eager_losses, eager_parameters = _losses_and_parameters(tmp_path / "eager", SMALL)
    compiled_losses, compiled_parameters = _losses_and_parameters(
        tmp_path / "compiled", Workload(**{**SMALL.__dict__, "compile": True}))
    assert compiled_losses == pytest.approx(eager_losses, rel=1e-5)
    for compiled, eager in zip(compiled_parameters, eager_parameters):
        torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
    assert eager_parameters[0].ne(_losses_and_parameters(tmp_path / "again", SMALL)[1][0]).sum() == 0


def test_compile_is_not_part_of_the_run_identity():
    from ovis.training.arguments import parse_args, run_hash
    argv = ["--dataset", "shapes", "--model", "sbm"]
    assert run_hash(parse_args(argv + ["--compile"])) == run_hash(parse_args(argv))
