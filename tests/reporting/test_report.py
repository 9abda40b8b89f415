"""report.py on synthetic run folders: files, exact pivot numbers, statuses, filters, errors."""
import json
import os
import re
import statistics
import subprocess
import sys

import pandas as pd
import pytest

from ovis import records
from ovis.reporting.aggregate import ReportError
from ovis.reporting.cli import report_options
from ovis.reporting.report import ReportOptions, build_report

from .helpers import ESTIMATORS, IWS, SEEDS, STEPS, read_text, write_run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PIVOTS = ("max:test:loss/L_k", "last:train:loss/kl_q_p", "mean:train:grads/snr", "min:train:loss/L_k")
METRICS = ("train:loss/L_k", "train:grads/snr")


def options(experiment, **overrides) -> ReportOptions:
    base = dict(exp=experiment["exp"], root=experiment["root"], output=experiment["output"],
                keys=("dataset", "estimator", "iw"), metrics=METRICS, detailed_metrics=METRICS,
                pivot_metrics=PIVOTS)
    return ReportOptions(**{**base, **overrides})


def raw_series(run_dir: str, metric: str) -> list:
    """The metric's values in step order, straight from metrics.jsonl (independent reader)."""
    split, key = metric.split(":", 1)
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        lines = [json.loads(line) for line in f]
    return [r["values"][key] for r in sorted(lines, key=lambda r: r["step"]) if r["split"] == split]


def expected_aggregate(run_dir: str, pivot: str) -> float:
    agg, metric = pivot.split(":", 1)
    values = raw_series(run_dir, metric)
    return {"max": max, "min": min, "mean": statistics.fmean, "last": lambda v: v[-1]}[agg](values)


@pytest.fixture(scope="module")
def default_report(shared_experiment):
    return build_report(options(shared_experiment))


def test_pivot_numbers_are_the_aggregates_of_the_metric_records(shared_experiment, default_report):
    experiment, report = shared_experiment, default_report
    pivot_csv = pd.read_csv(os.path.join(report.directory, "pivot.csv"))
    assert len(pivot_csv) == len(ESTIMATORS) * len(IWS)
    for estimator in ESTIMATORS:
        for iw in IWS:
            run_dirs = [os.path.join(experiment["exp_dir"], f"binmnist-sbm-{estimator}-iw{iw}-seed{s}") for s in SEEDS]
            row = pivot_csv[(pivot_csv["estimator"] == estimator) & (pivot_csv["iw"] == iw)].iloc[0]
            for pivot in PIVOTS:
                per_run = [expected_aggregate(d, pivot) for d in run_dirs]
                assert row[f"{pivot} mean"] == pytest.approx(statistics.fmean(per_run), rel=1e-12, abs=1e-12)
                assert row[f"{pivot} std"] == pytest.approx(statistics.stdev(per_run), rel=1e-9)
                assert row[f"{pivot} n"] == len(SEEDS)
    # The per-run table holds each run's aggregate exactly.
    runs_csv = pd.read_csv(os.path.join(report.directory, "runs.csv")).set_index("run_id")
    assert len(runs_csv) == len(ESTIMATORS) * len(IWS) * len(SEEDS)
    for run_id, row in runs_csv.iterrows():
        for pivot in PIVOTS:
            assert row[pivot] == pytest.approx(expected_aggregate(os.path.join(experiment["exp_dir"], run_id), pivot),
                                               rel=1e-12)


def test_report_folder_has_every_figure_and_table(default_report):
    report = default_report
    assert os.path.basename(report.directory) == options({"exp": "grid", "root": "", "output": ""}).report_id
    assert re.fullmatch(r"grid-[0-9a-f]{8}", os.path.basename(report.directory))  # not the default options
    expected = {"index.md", "run.log", "pivot.csv", "pivot.md", "pivot.tex", "runs.csv", "curves.csv"}
    for stem in ("pivot-plot", "curves-train-loss-L_k", "curves-train-grads-snr", "detailed-dataset=binmnist"):
        expected |= {f"{stem}.png", f"{stem}.pdf"}
    assert expected <= set(report.files)
    for name in expected:
        assert os.path.getsize(os.path.join(report.directory, name)) > 0
    index = read_text(report.directory, "index.md")
    for figure in ("pivot-plot.png", "curves-train-loss-L_k.png", "detailed-dataset=binmnist.png"):
        assert f"]({figure})" in index
    tex = read_text(report.directory, "pivot.tex")
    assert r"\begin{tabular}" in tex and r"OVIS$_{\sim}$ ($\gamma=1$)" in tex and r"$\pm$" in tex
    # curves.csv: every point of every completed run, with its attributes.
    curves = pd.read_csv(os.path.join(report.directory, "curves.csv"))
    assert set(curves.columns) >= {"run_id", "step", "metric", "value", "estimator", "iw", "seed"}
    assert len(curves) == len(ESTIMATORS) * len(IWS) * len(SEEDS) * len(STEPS) * 4  # 4 distinct metrics


def test_index_reports_statuses_and_failed_and_unfinished_runs(experiment, default_report):
    index = read_text(default_report.directory, "index.md")
    assert "| success | 18 |" in index and "| failed | 1 |" in index and "| running | 1 |" in index
    assert "binmnist-sbm-reinforce-iw50-seed4-failed" in index and "loss is NaN" in index
    assert "binmnist-sbm-vimco-arithmetic-iw50-seed4-running" in index
    assert "18 runs are in the figures and tables" in index
    # --non_completed adds them to the numbers.
    report = build_report(options(experiment, non_completed=True, metrics=(), detailed_metrics=()))
    assert len(report.per_run) == 20
    row = report.pivot.xs(("binmnist", 50, "reinforce"), level=("dataset", "iw", "estimator"))
    assert int(row[("max:test:loss/L_k", "n")].iloc[0]) == 4


def test_include_exclude_filters_and_report_id(experiment):
    report = build_report(options(experiment, include=("ovis", "vimco"), exclude=("iw5-",), metrics=(),
                                  detailed_metrics=()))
    assert re.fullmatch(r"grid-inc=ovis,vimco-exc=iw5--[0-9a-f]{8}", os.path.basename(report.directory))
    assert set(report.per_run["estimator"]) == {"ovis-gamma1", "vimco-arithmetic"}
    assert set(report.per_run["iw"]) == {50}
    index = read_text(report.directory, "index.md")
    assert "7 of 20 runs match include=ovis,vimco exclude=iw5-" in index


def test_where_keeps_the_runs_with_those_options_as_typed_values(experiment):
    report = build_report(options(experiment, where=("iw=50.0", "estimator=vimco-arithmetic", "estimator=reinforce"),
                                  metrics=(), detailed_metrics=()))
    assert set(report.per_run["estimator"]) == {"vimco-arithmetic", "reinforce"}
    assert set(report.per_run["iw"]) == {50}
    assert "runs match where=iw=50.0,estimator=vimco-arithmetic,estimator=reinforce" in read_text(report.directory,
                                                                                                   "index.md")


def test_variants_split_groups_and_redundant_options_are_dropped(experiment):
    # Same estimator and K with and without warm-up (ids differ too, but add nothing).
    for seed in (1, 2):
        for warmup, run_id in ((0, "iwbound"), (1000, "iwrbound")):
            config = {"dataset": "binmnist", "estimator": "ovis-gamma0", "iw": 5, "seed": seed, "warmup": warmup,
                      "id": run_id}
            write_run(experiment["exp_dir"], f"{run_id}-ovis-gamma0-seed{seed}", config)
    report = build_report(options(experiment, include=("ovis-gamma0",), metrics=(), detailed_metrics=()))
    assert report.pivot.index.names[-1] == "warmup"
    assert len(report.pivot) == 2
    assert all(report.pivot[(p, "n")].eq(2).all() for p in PIVOTS)


def test_resumed_run_duplicate_steps_keep_the_last_record_and_nan_is_ignored(experiment):
    config = {"dataset": "binmnist", "estimator": "dreg", "iw": 5, "seed": 1}
    values = {0: -5.0, 100: -3.0, 200: float("nan")}
    run_dir = write_run(experiment["exp_dir"], "resumed", config, steps=(0, 100, 200),
                        values=lambda step: {"loss/L_k": values[step], "loss/kl_q_p": 1.0, "grads/snr": 1.0})
    records.MetricsWriter(run_dir).write(100, "test", {"loss/L_k": -1.5})  # re-logged after a resume
    report = build_report(options(experiment, include=("resumed",), keys=("estimator", "iw"), metrics=(),
                                  detailed_metrics=()))
    row = report.per_run.loc["resumed"]
    assert row["max:test:loss/L_k"] == -1.5
    assert row["min:train:loss/L_k"] == -5.0
    assert row["last:train:loss/kl_q_p"] == 1.0


def test_two_keys_draw_the_pivot_plot_without_category(experiment):
    report = build_report(options(experiment, keys=("estimator", "iw"), detailed_metrics=()))
    assert "pivot-plot.png" in report.files and "detailed.png" not in report.files
    assert list(report.pivot.index.names) == ["iw", "estimator"]


@pytest.mark.parametrize("overrides, message", [
    ({"metrics": ("train:loss/nothing",)}, "train:loss/nothing"),
    ({"pivot_metrics": ("median:train:loss/L_k",)}, "agg in min, max, mean"),
    ({"keys": ("dataset", "estimator", "beta")}, "'beta'"),
    ({"ylims": ("train:loss/L_k:-80:-90",)}, "min < max"),
    ({"include": ("no-such-run",)}, "no completed run"),
    ({"where": ("iw",)}, "expected option=value"),
])
def test_bad_requests_raise_clear_errors(experiment, overrides, message):
    with pytest.raises(ReportError, match=message.replace("(", r"\(")):
        build_report(options(experiment, **overrides))


def test_refuses_to_overwrite_a_folder_that_is_not_a_report(experiment, tmp_path):
    target = tmp_path / "reports" / options(experiment).report_id
    target.mkdir(parents=True)
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(ReportError, match="not a report folder"):
        build_report(options(experiment))
    assert (target / "precious.txt").read_text() == "keep me"


def test_command_line(experiment):
    command = [sys.executable, os.path.join(REPO, "report.py"), "--exp", "grid", "--root", experiment["root"],
               "--output", experiment["output"], "--metrics", "train:loss/L_k", "--detailed_metrics", "",
               "--pivot_metrics", "max:test:loss/L_k", "--ylims", "train:loss/L_k:-100:-85", "--downsample", "5",
               "--ema", "0.5"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    directory = os.path.join(experiment["output"], report_options(command[2:]).report_id)
    assert os.path.basename(directory).startswith("grid-ema0.5-") and f"{directory}/index.md" in result.stderr
    curves = pd.read_csv(os.path.join(directory, "curves.csv"))
    assert curves.groupby(["run_id", "metric"]).size().max() <= 5
    assert "--ema 0.5" in read_text(directory, "index.md")
    bad = subprocess.run(command[:-4] + ["--keys", "estimator,nope"], capture_output=True, text=True, cwd=REPO)
    assert bad.returncode == 2 and "'nope'" in bad.stderr


def test_reports_with_other_options_go_elsewhere_and_nothing_foreign_is_deleted(experiment):
    """report.py, then a report with other options, then the first options again: the second report
    and files that no report wrote (report_figure3.py's figure, a note) survive.
    The first report goes through the command line, the others in process (same entry point)."""
    def argv(*extra):
        return ["--exp", "grid", "--root", experiment["root"], "--output", experiment["output"], "--include",
                "seed1", "--detailed_metrics", "", "--metrics", "train:loss/L_k", *extra]

    first_argv = argv("--pivot_metrics", "max:test:loss/L_k")
    result = subprocess.run([sys.executable, os.path.join(REPO, "report.py"), *first_argv], capture_output=True,
                            text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    first = os.path.join(experiment["output"], report_options(first_argv).report_id)
    first_index = read_text(first, "index.md")
    for name in ("figure3_left.png", "notes.txt"):
        with open(os.path.join(first, name), "w") as f:
            f.write("not written by report.py")
    second = build_report(report_options(argv("--pivot_metrics", "min:train:loss/kl_q_p"))).directory
    assert second != first and read_text(first, "index.md") == first_index
    assert "min:train:loss/kl_q_p" in read_text(second, "index.md")
    # The same options again: the report replaces its own files (removes those it no longer
    # writes, e.g. a figure of a category that is gone), keeps the others.
    manifest_path = os.path.join(first, "report.json")
    manifest = json.loads(read_text(manifest_path))
    manifest["files"].append("detailed-dataset=gone.png")
    with open(manifest_path, "w") as f:
        json.dump(manifest, f)
    with open(os.path.join(first, "detailed-dataset=gone.png"), "w") as f:
        f.write("a figure of the previous report")
    os.remove(os.path.join(experiment["exp_dir"], "binmnist-sbm-reinforce-iw5-seed1", "config.json"))
    assert build_report(report_options(first_argv)).directory == first
    assert read_text(first, "figure3_left.png") == read_text(first, "notes.txt") == "not written by report.py"
    manifest = json.loads(read_text(first, "report.json"))
    assert "index.md" in manifest["files"] and "notes.txt" not in manifest["files"]
    assert sorted(os.listdir(first)) == sorted(manifest["files"] + ["figure3_left.png", "notes.txt"])
    assert read_text(first, "index.md") != first_index  # rewritten: one run fewer


def test_pivot_metric_without_aggregation_takes_the_metrics_default(experiment):
    """``train:loss/L_k`` as the original's users wrote it: max for a bound, min for a divergence,
    mean for a gradient statistic."""
    report = build_report(options(experiment, pivot_metrics=("test:loss/L_k", "train:loss/kl_q_p", "train:grads/snr"),
                                  metrics=(), detailed_metrics=()))
    assert [c for c in report.pivot.columns.get_level_values(0).unique()] == [
        "max:test:loss/L_k", "min:train:loss/kl_q_p", "mean:train:grads/snr"]
    run_dir = os.path.join(experiment["exp_dir"], "binmnist-sbm-ovis-gamma1-iw5-seed1")
    row = report.per_run.loc["binmnist-sbm-ovis-gamma1-iw5-seed1"]
    for pivot in ("max:test:loss/L_k", "min:train:loss/kl_q_p", "mean:train:grads/snr"):
        assert row[pivot] == pytest.approx(expected_aggregate(run_dir, pivot), rel=1e-12)
