"""A long ``run.py`` shows its progress, a tqdm bar (steps/s, ETA, latest
bound) on a terminal, a plain line every N steps otherwise."""
import re
import sys

import pytest

from ovis.training.progress import Progress, plain_line_interval

from .test_trainer import OPTIONS, build_toy_components, main

LOUD = [option for option in OPTIONS if option != "--silent"]
PLAIN_LINE = re.compile(r"step (\d+)/120 \([\d.]+%\) epoch \d+ \| [\d.]+ steps/s \| ETA [\d:?]+ \| L_k -\d+\.\d{3}")


def run_toy(root, *extra):
    # 20 epochs of 6 batches: 120 steps, training losses read every 50 steps
    return main(["--root", str(root)] + LOUD + ["--epochs", "20", "--eval_freq", "10"] + list(extra),
                build=build_toy_components)


@pytest.mark.parametrize("total, interval", [(500000, 5000), (120, 50), (5001, 100), (1, 50)])
def test_about_a_hundred_plain_lines_per_run_at_reads_of_the_losses(total, interval):
    assert plain_line_interval(total) == interval


def test_without_a_terminal_a_plain_line_every_n_steps(tmp_path, capsys):
    assert not sys.stderr.isatty()
    assert run_toy(tmp_path) == 0
    log = (tmp_path / "e" / "r" / "run.log").read_text()
    # the first read at or after each multiple of 50: the evaluation at step 60 reads the losses,
    # the next read is 50 steps later
    assert [int(step) for step in PLAIN_LINE.findall(log)] == [50, 110]
    assert [int(step) for step in PLAIN_LINE.findall(capsys.readouterr().err)] == [50, 110]


def test_silent_runs_keep_their_plain_lines_in_the_log_only(tmp_path, capsys):
    assert run_toy(tmp_path, "--silent") == 0
    assert len(PLAIN_LINE.findall((tmp_path / "e" / "r" / "run.log").read_text())) == 2
    assert capsys.readouterr().err == ""


def test_on_a_terminal_a_bar_with_steps_per_second_eta_and_the_latest_bound(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert run_toy(tmp_path) == 0
    err = capsys.readouterr().err
    assert re.search(r"\| 120/120 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+step/s, L_k=-\d+\.\d{3}, alpha=0, epoch=\d+\]", err)
    assert re.search(r"\| 50/120 \[\d\d:\d\d<\d\d:\d\d", err)  # updated during training, ETA included
    assert not PLAIN_LINE.search((tmp_path / "e" / "r" / "run.log").read_text())


def test_a_plain_line_at_least_every_two_minutes_of_slow_steps():
    clock = iter([0.0, 10.0, 130.0, 140.0, 300.0])  # at the start, then at each update
    lines = []
    logger = type("Logger", (), {"info": lambda self, fmt, line: lines.append(line)})()
    progress = Progress(total=500000, initial=0, silent=True, logger=logger, clock=lambda: next(clock))
    assert progress.every == 5000
    for step in (50, 100, 150, 200):  # at 10 s: not due; 130 s: due by time; 140 s: not; 300 s: due
        progress.update(step, 0, -100.0, 0.0)
    assert lines == ["step 100/500000 (0.0%) epoch 0 | 0.8 steps/s | ETA 180:31:10 | L_k -100.000",
                     "step 200/500000 (0.0%) epoch 0 | 0.7 steps/s | ETA 208:15:00 | L_k -100.000"]
