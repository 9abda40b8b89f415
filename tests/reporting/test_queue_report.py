"""A tiny grid through the queue (manager.py -> run.py), then report.py on its runs."""
import json
import os
import subprocess
import sys

import pytest

from ovis.reporting.report import ReportOptions, build_report

from .helpers import read_text

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GLOBAL = ("--silent --dataset gmm --mini --N 5 --hdim 8 --bs 50 --epochs 2 --eval_freq 1 --iw 4 --iw_test 20 "
          "--iw_valid 20 --max_eval 100 --test_bs 100 --valid_bs 100 --grad_samples 5 --grad_key phi --grad_bs 20")
PIVOTS = ("max:test:loss/L_k", "min:test:gmm/posterior_distance", "mean:train:grads/snr")


def series(run_dir: str, metric: str) -> list:
    split, key = metric.split(":", 1)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    return [r["values"][key] for r in sorted(lines, key=lambda r: r["step"]) if r["split"] == split]


def test_report_of_a_grid_run_through_the_queue(tmp_path):
    spec = {"description": "Two estimators on the Gaussian mixture, and one run that diverges.",
            "args": ["--estimator ovis-gamma1 --seed 1", "--estimator ovis-gamma1 --seed 2",
                     "--estimator reinforce --seed 1", "--estimator vimco-arithmetic --seed 1 --lr 1e9"],
            "global": GLOBAL, "parameters": {}}
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "tiny.json").write_text(json.dumps(spec))
    root = tmp_path / "runs"
    manager = subprocess.run([sys.executable, os.path.join(REPO, "manager.py"), "--exp", "tiny", "--experiments",
                              str(tmp_path / "experiments"), "--root", str(root), "--processes", "2"],
                             capture_output=True, text=True, cwd=REPO, timeout=600)
    assert manager.returncode in (0, 1), manager.stderr  # 1: a run failed, as intended
    report = build_report(ReportOptions(exp="tiny", root=str(root), output=str(tmp_path / "reports"),
                                        keys=("estimator", "iw"), metrics=("test:loss/L_k",), detailed_metrics=(),
                                        pivot_metrics=PIVOTS))

    index = read_text(report.directory, "index.md")
    assert spec["description"] in index  # kept by the queue
    assert "| success | 3 |" in index and "| failed | 1 |" in index
    assert "gmm-vimco-arithmetic-iw4-seed1" in index and "DivergenceError" in index  # why the run failed
    assert "without config.json" not in index
    per_run = report.per_run
    assert sorted(per_run["estimator"]) == ["ovis-gamma1", "ovis-gamma1", "reinforce"]
    for run_id, row in per_run.iterrows():
        run_dir = str(root / "tiny" / run_id)
        assert row["max:test:loss/L_k"] == pytest.approx(max(series(run_dir, "test:loss/L_k")), rel=1e-12)
        distances = series(run_dir, "test:gmm/posterior_distance")
        assert row["min:test:gmm/posterior_distance"] == pytest.approx(min(distances), rel=1e-12)
        snr = series(run_dir, "train:grads/snr")
        assert row["mean:train:grads/snr"] == pytest.approx(sum(snr) / len(snr), rel=1e-12)
    ovis = per_run[per_run["estimator"] == "ovis-gamma1"]["max:test:loss/L_k"]
    cell = report.pivot.xs("ovis-gamma1", level="estimator")
    assert cell[("max:test:loss/L_k", "mean")].iloc[0] == pytest.approx(ovis.mean(), rel=1e-12)
    assert cell[("max:test:loss/L_k", "n")].iloc[0] == 2
    assert {"pivot-plot.png", "curves-test-loss-L_k.png", "pivot.tex"} <= set(report.files)
