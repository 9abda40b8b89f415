"""measure_efficiency.py: step times and peak memory per estimator and K (on CPU)."""
import os
import warnings

import pandas as pd
import pytest

from ovis.training import efficiency
from ovis.training.efficiency import Workload, efficiency_table, measure, measure_in_this_process
from ovis.reporting.efficiency import markdown_summary, plot_efficiency

# A small SBN on the generated shapes data: the measurement, not the model, is under test.
SMALL = dict(model="sbm", dataset="shapes", hparams={"N": 16, "depth": 1}, batch_size=8, untimed_steps=1, steps=3, threads=1)


def test_a_workload_is_measured_in_a_fresh_process():
    workload = Workload(estimator="ovis-gamma1", iw=4, **SMALL)
    result = measure(workload)
    assert result.workload == workload and result.device == "cpu"
    assert len(result.step_ms) == 3 and min(min(pair) for pair in result.step_ms) > 0
    assert result.peak_memory_mib > 50  # a Python process with torch loaded
    assert 0 <= result.step_memory_mib < result.peak_memory_mib


def test_efficiency_table(tmp_path, monkeypatch):
    monkeypatch.setattr(efficiency, "measure", measure_in_this_process)  # the table logic, without processes
    messages = []
    workloads = [Workload(estimator=e, iw=4, **SMALL) for e in ("reinforce", "ovis-gamma1", "pathwise-iwae")]
    table = efficiency_table(workloads, log=messages.append)
    assert list(table["estimator"]) == ["reinforce", "ovis-gamma1"]
    assert any("skip sbm / pathwise-iwae" in m and "reparam" in m for m in messages)
    assert (table["time_ms"] > 0).all() and (table["time_ms_p10"] <= table["time_ms_p90"]).all()
    assert (table["peak_memory_mib"] >= table["step_memory_mib"]).all() and (table["step_memory_mib"] >= 0).all()
    assert set(table["memory_source"]) <= {"vmhwm", "ru_maxrss"} and set(table["device_used"]) == {"cpu"}
    reinforce = table[table["estimator"] == "reinforce"].iloc[0]
    assert reinforce["time_vs_reinforce"] == 1.0
    ovis = table[table["estimator"] == "ovis-gamma1"].iloc[0]
    assert ovis["time_vs_reinforce"] == pytest.approx(ovis["time_ms"] / reinforce["time_ms"])
    summary = markdown_summary(table)
    assert "### sbm (train, batch 8, cpu)" in summary and "| estimator | K=4 |" in summary
    assert f"{reinforce['time_ms']:.2f} ms / +{reinforce['step_memory_mib']:.0f} MiB" in summary
    paths = plot_efficiency(table, str(tmp_path / "efficiency"))
    assert all(os.path.getsize(p) > 0 for p in paths)


def test_a_grid_skips_what_the_estimator_refuses_and_fails_on_bad_options(monkeypatch):
    """Incompatible combinations (an estimator with a model, or with --compile) are skipped with
    run.py's message; a bad option (ovis-gamma1 at K = 1) stops the grid with it."""
    from ovis.cli import ArgumentError
    monkeypatch.setattr(efficiency, "measure", measure_in_this_process)
    messages = []
    table = efficiency_table([Workload(estimator="relax", iw=1, compile=True, **SMALL)], log=messages.append)
    assert table.empty and len(messages) == 1
    assert messages[0].startswith("skip sbm / relax: --compile with --estimator relax") and "drop --compile" in messages[0]
    with pytest.raises(ArgumentError, match="--iw 2 works"):
        efficiency_table([Workload(estimator="ovis-gamma1", iw=1, **SMALL)], log=messages.append)


def test_peak_memory_follows_the_number_of_particles():
    """Evaluating 8 images with K = 3000 particles at once (24,000 rows of 768 pixels, ~70 MiB
    per copy of the expanded batch) needs about ten times the memory of K = 300. Each is measured
    in a fresh process, as measure_efficiency.py does: in a long test session the heap that earlier
    tests freed can absorb the larger batch without raising the peak."""
    base = dict(SMALL, kind="evaluate", estimator="-", untimed_steps=0, steps=1, chunk_size=10 ** 6)  # at once
    small = measure(Workload(iw=300, **base))
    large = measure(Workload(iw=3000, **base))
    assert large.peak_memory_mib > small.peak_memory_mib + 60
    if small.memory_source == "vmhwm":
        assert large.step_memory_mib > 60 and large.step_memory_mib > 3 * small.step_memory_mib


def test_bad_workloads_are_refused():
    with pytest.raises(ValueError, match="kind 'test'"):
        Workload(model="sbm", estimator="reinforce", iw=5, kind="test")
    with pytest.raises(ValueError, match="iw, mc, batch_size and steps must be >= 1"):
        Workload(model="sbm", estimator="reinforce", iw=0)


def test_untimed_steps_option(capsys):
    from ovis.apps.efficiency import build_parser, workloads_of
    args = build_parser().parse_args(["--untimed_steps", "4", "--models", "sbm", "--estimators", "reinforce",
                                      "--iw", "5,50"])
    assert [(w.iw, w.untimed_steps) for w in workloads_of(args)] == [(5, 4), (50, 4)]
    assert capsys.readouterr().err == ""


def test_a_measurement_reports_threads_floor_and_load():
    result = measure_in_this_process(Workload(estimator="reinforce", iw=4, **SMALL)).row()
    assert result["threads_used"] == 1 and result["load"] >= 0
    assert result["floor_cpu_ms"] > 0 and result["cpu_vs_floor"] == pytest.approx(result["cpu_ms"] / result["floor_cpu_ms"])
    assert "on 8 rows" in result["floor"] and "on 32 rows" in result["floor"]


def test_the_clock_option_picks_cpu_or_wall_time():
    from ovis.apps.efficiency import build_parser
    from ovis.training.efficiency import with_clock
    table = pd.DataFrame({"time_ms": [10.0], "time_ms_p10": [9.0], "time_ms_p90": [12.0], "cpu_ms": [4.0],
                          "cpu_ms_p10": [3.5], "cpu_ms_p90": [4.5]})
    assert with_clock(table, "cpu")[["time_ms", "time_ms_p10", "time_ms_p90"]].values.tolist() == [[4.0, 3.5, 4.5]]
    assert with_clock(table, "wall").equals(table)
    assert build_parser().parse_args([]).clock == "cpu"


def test_the_figure_draws_a_memory_column_of_zeros(tmp_path):
    """A step that grew no memory (0 MiB at every K) gets a linear axis, not an error."""
    rows = [{"model": "sbm", "kind": "train", "estimator": e, "iw": k, "time_ms": t * k, "time_ms_p10": t * k,
             "time_ms_p90": t * k, "step_memory_mib": 0.0, "device_used": "cpu", "batch_size": 8}
            for e, t in (("reinforce", 1.0), ("ovis-gamma1", 1.1)) for k in (5, 50)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = plot_efficiency(pd.DataFrame(rows), str(tmp_path / "efficiency"))
    assert all(os.path.getsize(p) > 0 for p in paths)
