"""Tiny runs of the training loop on the toys (in process): files, metric names, schedules,
SIGTERM + resume, NaN losses, run-folder rules and argument errors."""
import functools
import json
import os

import pytest
import torch

from ovis.records import TIMING_METRICS, read_config, read_metrics, read_outcome
from ovis.training.checkpoint import load_checkpoint
from ovis.apps.train import main

from .toys import build_toy_components

OPTIONS = ["--exp", "e", "--run_id", "r", "--epochs", "4", "--eval_freq", "2", "--bs", "8", "--iw", "3",
           "--grad_samples", "10", "--grad_bs", "4", "--mc_au_analysis", "10", "--npoints_au_analysis", "16",
           "--test_bs", "8", "--valid_bs", "10", "--iw_test", "20", "--iw_valid", "20", "--max_eval", "16", "--silent"]


def run(root, *extra, **estimator_options):
    build = functools.partial(build_toy_components, **estimator_options)
    return main(["--root", str(root)] + OPTIONS + list(extra), build=build)


def records(run_dir):
    """metrics.jsonl without wall-clock values."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    return [(r["step"], r["epoch"], r["split"], {k: v for k, v in r["values"].items() if k not in TIMING_METRICS})
            for r in lines]


def test_a_run_writes_every_file_and_metric(tmp_path):
    assert run(tmp_path, "--warmup", "24", "--alpha_init", "0.5", "--warmup_mode", "linear") == 0
    run_dir = tmp_path / "e" / "r"
    for name in ("config.json", "run.log", "metrics.jsonl", "checkpoint.pt", "model.pt", "prior-samples.png",
                 "reconstructions.png", "outcome.txt"):
        assert (run_dir / name).is_file(), name
    for split in ("train", "test", "valid"):
        assert any(f.startswith("events.out.tfevents") for f in os.listdir(run_dir / split)), split
    assert read_outcome(str(run_dir)) == "success"
    config = read_config(str(run_dir))
    assert config["run_id"] == "r" and config["iw"] == 3 and len(config["hash"]) == 32

    metrics = read_metrics(str(run_dir))
    names = set(metrics.metric)
    for name in ("train:loss/L_k", "train:loss/elbo", "train:loss/kl_q_p", "train:loss/nll", "train:loss/kl",
                 "train:loss/ess", "train:grads/snr", "train:grads/variance", "train:grads/magnitude",
                 "train:grads/dsnr", "train:grads/keep_ratio", "train:snr/p50", "train:active_units/au",
                 "train:active_units/r_au", "train:active_units/n", "train:parameters/alpha", "train:info/epoch",
                 "online:loss/L_k", "test:loss/L_k", "test:loss/overfitting", "test:loss/kl_q_p",
                 "test:parameters/beta", "test:info/elapsed-time", "test:info/iters", "valid:loss/L_k",
                 "train:info/model-evaluations", "test:info/training-time", "test:info/training-cpu-time"):
        assert name in names, name

    def value(metric, step):
        return metrics[(metrics.metric == metric) & (metrics.step == step)].value.item()

    # evaluations at epochs 0, 2, 4 = steps 0, 12, 24 (6 batches of 8 per epoch)
    assert sorted(metrics[metrics.metric == "test:loss/L_k"].step) == [0, 12, 24]
    assert [value("train:parameters/alpha", s) for s in (0, 12, 24)] == pytest.approx([0.5, 0.25, 0.0])
    assert value("test:loss/overfitting", 12) == pytest.approx(value("train:loss/L_k", 12) - value("test:loss/L_k", 12))
    assert value("train:active_units/n", 0) == 4 and value("test:info/iters", 0) == 2  # 16 points / batch 8
    assert value("train:info/model-evaluations", 12) == 3  # mc * iw forward passes per data point and step
    assert "steps/s, 3 model evaluations per data point and step" in (run_dir / "run.log").read_text()
    # the validation pass is logged once, at the step of the best test bound
    best_step = max((0, 12, 24), key=lambda s: value("test:loss/L_k", s))
    assert list(metrics[metrics.metric == "valid:loss/L_k"].step) == [best_step]
    assert value("valid:info/iters", best_step) == 3  # the whole valid split: 24 points in batches of 10
    checkpoint = load_checkpoint(str(run_dir))
    assert checkpoint["state"]["step"] == 24 and checkpoint["state"]["best_step"] == best_step


def test_sigterm_checkpoints_and_the_resumed_run_equals_an_unbroken_one(tmp_path):
    assert run(tmp_path / "unbroken") == 0
    assert run(tmp_path / "broken", signal_at=10) == 130
    run_dir = tmp_path / "broken" / "e" / "r"
    assert read_outcome(str(run_dir)) == "aborted"
    assert "SIGTERM received: stopped at step 10" in (run_dir / "outcome.txt").read_text()
    assert load_checkpoint(str(run_dir))["state"]["step"] == 10
    assert [r[0] for r in records(run_dir)] == [0, 0]  # the evaluation of step 0 only
    with open(run_dir / "metrics.jsonl", "a") as f:  # as if the process had logged after its checkpoint
        f.write('{"step": 11, "epoch": 1, "split": "train", "time": 0, "values": {"loss/L_k": 0.0}}\n')

    assert run(tmp_path / "broken", "--resume") == 0
    assert read_outcome(str(run_dir)) == "success"
    unbroken_dir = tmp_path / "unbroken" / "e" / "r"
    assert records(run_dir) == records(unbroken_dir)
    for name in ("model.pt", "checkpoint.pt"):
        resumed = torch.load(run_dir / name, weights_only=True)
        unbroken = torch.load(unbroken_dir / name, weights_only=True)
        resumed, unbroken = (resumed["model"], unbroken["model"]) if name == "checkpoint.pt" else (resumed, unbroken)
        assert all(torch.equal(resumed[key], unbroken[key]) for key in unbroken)


def test_the_rows_per_forward_pass_are_measured_once_and_kept_by_the_resumed_run(tmp_path, monkeypatch):
    import ovis.training.evaluation as evaluation
    monkeypatch.setattr(evaluation, "measured_chunk_rows", lambda model, x, largest_rows: (96, {96: 1.0}))
    assert run(tmp_path, signal_at=10) == 130
    run_dir = tmp_path / "e" / "r"
    assert load_checkpoint(str(run_dir))["state"]["chunk_rows"] == 96
    assert "; 96 rows per forward pass (measured (96: 1 rows per second))" in (run_dir / "run.log").read_text()

    def measured_again(*args):
        raise AssertionError("the resumed run measured its rows again")
    monkeypatch.setattr(evaluation, "measured_chunk_rows", measured_again)
    assert run(tmp_path, "--resume") == 0
    assert "; 96 rows per forward pass (kept from the checkpoint)" in (run_dir / "run.log").read_text()
    assert load_checkpoint(str(run_dir))["state"]["chunk_rows"] == 96
    assert run(tmp_path, "--rf", "--chunk_rows", "64") == 0
    assert "; 64 rows per forward pass (--chunk_rows)" in (run_dir / "run.log").read_text()
    assert load_checkpoint(str(run_dir))["state"]["chunk_rows"] == 64


def test_a_nan_loss_fails_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    assert run(tmp_path, nan_after=14) == 1
    run_dir = tmp_path / "e" / "r"
    message = (run_dir / "outcome.txt").read_text()
    assert message.startswith("Failed. NonFiniteLossError: non-finite training loss at step 15")
    assert "last good values at step 14" in message and "estimator toy-score" in message
    assert "the checkpoint of step 12 is kept" in message
    checkpoint = load_checkpoint(str(run_dir))
    assert checkpoint["state"]["step"] == 12
    assert all(torch.isfinite(value).all() for value in checkpoint["model"].values())


def test_an_existing_checkpoint_needs_resume_or_rf(tmp_path, capsys):
    assert run(tmp_path) == 0
    run_dir = tmp_path / "e" / "r"
    first = records(run_dir)
    assert run(tmp_path) == 2
    assert "already holds a checkpoint: pass --resume to continue it or --rf" in capsys.readouterr().err
    (run_dir / "process.log").write_text("written by the queue")
    assert run(tmp_path, "--rf") == 0
    assert records(run_dir) == first  # started over: same records, not appended
    assert (run_dir / "process.log").read_text() == "written by the queue"


def test_resume_without_a_checkpoint_starts_afresh(tmp_path):
    run_dir = tmp_path / "e" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.jsonl").write_text('{"step": 99, "epoch": 9, "split": "test", "time": 0, "values": {}}\n')
    assert run(tmp_path, "--resume") == 0
    assert 99 not in [r[0] for r in records(run_dir)]


@pytest.mark.parametrize("argv, message", [
    (["--iw", "0"], "--iw must be >= 1"),
    (["--warmup", "10"], "needs --alpha_init"),
    (["--device", "tpu"], "expected auto, cpu, cuda or cuda:N"),
])
def test_bad_arguments_exit_2_before_touching_the_run_folder(tmp_path, capsys, argv, message):
    assert run(tmp_path, *argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_step_monitor_averages_diagnostics_and_names_the_first_non_finite_step():
    from ovis.training.monitor import NonFiniteLossError, StepMonitor

    monitor = StepMonitor(torch.device("cpu"), window=4)
    for step, (loss, bound) in enumerate([(1.0, -3.0), (2.0, -5.0), (3.0, -4.0)], start=1):
        monitor.record(step, torch.tensor(loss), {"loss/L_k": torch.tensor([bound, bound + 2]),
                                                  "reinforce/mse": torch.tensor(0.5 * step)})
    assert monitor.sync() == pytest.approx({"loss/surrogate": 2.0, "loss/L_k": -3.0, "reinforce/mse": 1.0})
    state = monitor.state_dict()  # a checkpoint keeps the sums of the steps since the last evaluation
    assert monitor.pop_averages() == pytest.approx({"loss/surrogate": 2.0, "loss/L_k": -3.0, "reinforce/mse": 1.0})
    monitor.load_state_dict(state)
    monitor.record(4, torch.tensor(4.0), {"loss/L_k": torch.tensor([-1.0]), "reinforce/mse": torch.tensor(2.0)})
    monitor.sync()
    assert monitor.pop_averages() == pytest.approx({"loss/surrogate": 2.5, "loss/L_k": -2.5, "reinforce/mse": 1.25})
    assert monitor.pop_averages() == {}
    monitor.record(5, torch.tensor(1.0), {"loss/L_k": torch.tensor([-1.0]), "reinforce/mse": torch.tensor(0.0)})
    monitor.record(6, torch.tensor(float("nan")), {"loss/L_k": torch.tensor([-1.0]), "reinforce/mse": torch.tensor(0.0)})
    with pytest.raises(NonFiniteLossError, match="at step 6 .*last good values at step 5: loss 1, L_k -1"):
        monitor.sync()


def test_resuming_a_finished_run_repeats_only_the_final_validation(tmp_path):
    assert run(tmp_path) == 0
    run_dir = tmp_path / "e" / "r"
    finished = records(run_dir)
    assert run(tmp_path, "--resume") == 0
    assert records(run_dir) == finished and [r[2] for r in finished].count("valid") == 1


def test_resuming_with_other_options_is_refused(tmp_path, capsys):
    assert run(tmp_path, signal_at=5) == 130
    assert run(tmp_path, "--resume", "--iw", "4", "--lr", "0.01") == 2
    assert "holds a run with other options (changed: iw, lr)" in capsys.readouterr().err
    # the length sets the learning-rate schedule: a longer run is another run (ovis.identity)
    assert run(tmp_path, "--resume", "--epochs", "5") == 2
    assert "(changed: epochs)" in capsys.readouterr().err


def test_a_time_budget_stops_training_at_the_first_step_past_it_then_evaluates(tmp_path, monkeypatch):
    clock = iter(range(10 ** 6))
    monkeypatch.setattr("ovis.training.trainer.time.process_time", lambda: 0.25 * next(clock))
    # each step reads the clock twice: 0.25 s a step, so a budget of 2.5 s is spent at step 10 of 24
    assert run(tmp_path, "--time_budget", "2.5") == 0
    run_dir = tmp_path / "e" / "r"
    metrics = read_metrics(str(run_dir))
    assert sorted(metrics[metrics.metric == "test:loss/L_k"].step) == [0, 10]
    spent = metrics[metrics.metric == "test:info/training-cpu-time"].set_index("step").value
    assert spent[0] == 0 and spent[10] == 2.5
    assert load_checkpoint(str(run_dir))["state"]["step"] == 10
    finished = records(run_dir)
    assert run(tmp_path, "--resume", "--time_budget", "2.5") == 0  # a spent budget trains no further
    assert records(run_dir) == finished
