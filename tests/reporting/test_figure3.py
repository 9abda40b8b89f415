"""report_figure3.py on a report built from synthetic runs."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from ovis.reporting.figure3 import Figure3Options, draw_figure3, hann_smooth
from ovis.reporting.report import ReportOptions, build_report

from .helpers import SEEDS

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def smoothed_seed_mean(exp_dir: str, estimator: str, iw: int, window: int) -> np.ndarray:
    series = []
    for seed in SEEDS:
        with open(os.path.join(exp_dir, f"binmnist-sbm-{estimator}-iw{iw}-seed{seed}", "metrics.jsonl")) as f:
            lines = [json.loads(line) for line in f]
        series.append([r["values"]["loss/L_k"] for r in lines if r["split"] == "train"])
    return hann_smooth(np.mean(series, axis=0), window)


def test_figure3_from_a_report(experiment):
    build_report(ReportOptions(exp="grid", root=experiment["root"], output=experiment["output"],
                               include=("iw",), metrics=("train:loss/L_k",), detailed_metrics=(),
                               pivot_metrics=("max:train:loss/L_k",)))
    options = Figure3Options(figure="left", output=experiment["output"], report="grid-inc=iw", ylim=None, window=7)
    paths, table = draw_figure3(options)
    assert [os.path.basename(p) for p in paths] == ["figure3_left.png", "figure3_left.pdf"]
    assert len(table) == 6
    for row in table.itertuples():
        expected = smoothed_seed_mean(experiment["exp_dir"], row.estimator, row.iw, 7)
        assert row.max == pytest.approx(expected.max(), rel=1e-12)
        assert row.final == pytest.approx(expected[-1], rel=1e-12)


def test_figure3_command_line_errors(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "report_figure3.py"), "--output", str(tmp_path)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2
    assert "curves.csv not found" in result.stderr and "--include iwbound" in result.stderr


def test_figure3_finds_the_one_report_made_with_other_options(tmp_path):
    """report.py puts reports with non-default options in <name>-<id>: the figure finds the one
    report of that name, and asks for --report when there are several."""
    for name in ("grid-inc=iw-0123abcd", "grid-inc=iw-exc=x"):
        (tmp_path / name).mkdir()
    assert Figure3Options(output=str(tmp_path), report="grid-inc=iw").report_dir == str(tmp_path / "grid-inc=iw-0123abcd")
    (tmp_path / "grid-inc=iw-4567ef89").mkdir()
    with pytest.raises(ValueError, match="choose one with --report"):
        Figure3Options(output=str(tmp_path), report="grid-inc=iw").report_dir
    (tmp_path / "grid-inc=iw").mkdir()
    assert Figure3Options(output=str(tmp_path), report="grid-inc=iw").report_dir == str(tmp_path / "grid-inc=iw")
