"""asymptotic_variance.py (Figure 1): K grid, slope fit, a short run, resume, report."""
import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from ovis import records
from ovis.analysis.asymptotic import fit_loglog_slope, iw_values, slope_table
from ovis.apps.asymptotic import main
from ovis.reporting.asymptotic import build_asymptotic_report, draw_figures

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHORT = ["--iw_min", "4", "--iw_max", "64", "--iw_steps", "3", "--mc_samples", "300", "--npoints", "8",
         "--samples_per_batch", "100000", "--iw_valid", "64", "--silent"]


def test_iw_grid_matches_the_original():
    assert iw_values(3, 1000, 5) == [1000, 234, 54, 12, 3]  # the original's K grid
    assert iw_values(5, 100, 3) == [100, 22, 5]
    assert iw_values(2, 3, 5) == [3, 2]
    assert iw_values(7, 50, 1) == [50]


def test_loglog_slope_of_power_laws():
    k = np.array([3, 12, 54, 233, 1000])
    assert fit_loglog_slope(k, 0.7 * np.sqrt(k)) == pytest.approx(0.5, abs=1e-12)
    assert fit_loglog_slope(k, 3.0 / np.sqrt(k)) == pytest.approx(-0.5, abs=1e-12)
    assert fit_loglog_slope(k, 2.0 / k) == pytest.approx(-1.0, abs=1e-12)
    # Non-positive or non-finite values are left out; one K is not enough.
    assert fit_loglog_slope(k, [0.0, 1.0, np.nan, 4.0, -1.0]) == pytest.approx(math.log(4) / math.log(233 / 12))
    assert math.isnan(fit_loglog_slope([5, 5], [1.0, 2.0]))
    data = pd.DataFrame({"epsilon": 0.01, "estimator": ["a"] * 5 + ["b"] * 5, "iw": list(k) * 2,
                         "grads/snr": list(np.sqrt(k)) + list(1 / np.sqrt(k)), "grads/variance": list(1.0 / k) * 2,
                         "grads/magnitude": 1.0})
    table = slope_table(data).set_index("estimator")
    assert table.loc["a", "slope:grads/snr"] == pytest.approx(0.5)
    assert table.loc["b", "slope:grads/snr"] == pytest.approx(-0.5)
    assert table.loc["a", "slope:grads/variance"] == pytest.approx(-1.0)
    assert table.loc["a", "slope:grads/magnitude"] == pytest.approx(0.0, abs=1e-12)
    assert table["iw_min"].eq(3).all() and table["iw_max"].eq(1000).all() and table["points"].eq(5).all()


@pytest.fixture(scope="module")
def short_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    argv = ["--root", str(root), "--exp", "asym", "--run_id", "short", "--estimators", "ovis-gamma1,ovis-gamma0"]
    assert main(argv + SHORT, draw_figures=draw_figures) == 0
    return {"root": str(root), "run_dir": os.path.join(str(root), "asym", "short"), "argv": argv + SHORT}


def test_short_run_shows_the_papers_snr_slopes(short_run):
    slopes = pd.read_csv(os.path.join(short_run["run_dir"], "slopes.csv")).set_index("estimator")
    gamma1, gamma0 = slopes.loc["ovis-gamma1", "slope:grads/snr"], slopes.loc["ovis-gamma0", "slope:grads/snr"]
    assert gamma1 == pytest.approx(0.5, abs=0.1)      # SNR ~ sqrt(K)
    assert 0.05 < gamma0 < gamma1                     # grows, but more slowly
    # gamma = 1 keeps a non-vanishing mean (flat magnitude) while gamma = 0's mean decays.
    assert abs(slopes.loc["ovis-gamma1", "slope:grads/magnitude"]) < 0.1
    assert slopes.loc["ovis-gamma0", "slope:grads/magnitude"] < -0.5


def test_short_run_files(short_run):
    run_dir = short_run["run_dir"]
    assert records.read_outcome(run_dir) == records.SUCCESS
    for name in ("config.json", "run.log", "data.csv", "coordinates.csv", "grads.csv", "slopes.csv",
                 "asymptotic-gradients.png", "asymptotic-gradients.pdf", "asymptotic-gradients-dist.png"):
        assert os.path.getsize(os.path.join(run_dir, name)) > 0, name
    data = pd.read_csv(os.path.join(run_dir, "data.csv"))
    assert sorted(zip(data["estimator"], data["iw"])) == sorted(
        (e, k) for e in ("ovis-gamma0", "ovis-gamma1") for k in (64, 16, 4))
    assert {"grads/snr", "grads/variance", "grads/magnitude", "grads/dsnr", "perturbed:loss/L_k"} <= set(data.columns)
    coordinates = pd.read_csv(os.path.join(run_dir, "coordinates.csv"))
    assert len(coordinates) == 6 * 20  # D = 20 coordinates of b
    # The summary SNR is the mean of the per-coordinate SNRs (all coordinates carry noise here).
    for row in data.itertuples():
        per = coordinates[(coordinates["estimator"] == row.estimator) & (coordinates["iw"] == row.iw)]
        assert data.loc[row.Index, "grads/snr"] == pytest.approx(per["snr"].mean(), rel=1e-6)
    grads = pd.read_csv(os.path.join(run_dir, "grads.csv"))
    assert len(grads) == 6 * 300 and grads["coordinate"].nunique() == 1
    tracked = grads["coordinate"].iloc[0]
    first = coordinates[(coordinates["estimator"] == "ovis-gamma1") & (coordinates["iw"] == 64)]
    assert tracked == first.loc[first["magnitude"].idxmax(), "coordinate"]  # largest |mean| at the first row
    samples = grads[(grads["estimator"] == "ovis-gamma1") & (grads["iw"] == 64)]["grad"]
    assert samples.mean() == pytest.approx(first.loc[first["coordinate"] == tracked, "mean"].iloc[0], rel=1e-5)


def test_resume_skips_measured_rows_and_a_rerun_needs_a_flag(short_run):
    data_path = os.path.join(short_run["run_dir"], "data.csv")
    before = pd.read_csv(data_path)
    assert main(short_run["argv"] + ["--resume"]) == 0
    pd.testing.assert_frame_equal(pd.read_csv(data_path), before)
    assert main(short_run["argv"]) == 2


def test_report_of_the_experiment(short_run, tmp_path):
    directory = build_asymptotic_report(short_run["root"], str(tmp_path), "asym", log=lambda text: None)
    assert {"index.md", "data.csv", "slopes.csv", "asymptotic-gradients.png", "asymptotic-gradients-dist.png"} <= set(
        os.listdir(directory))
    slopes = pd.read_csv(os.path.join(directory, "slopes.csv")).set_index("estimator")
    run_slopes = pd.read_csv(os.path.join(short_run["run_dir"], "slopes.csv")).set_index("estimator")
    slope = run_slopes.loc["ovis-gamma1", "slope:grads/snr"]
    assert slopes.loc["ovis-gamma1", "slope:grads/snr"] == pytest.approx(slope)


@pytest.mark.parametrize("argv, message", [
    (["--estimators", "ovis-gamma1,nope"], "'nope' is not a valid estimator id"),
    (["--iw_min", "10", "--iw_max", "5"], "iw_min <= iw_max"),
    (["--epsilon", "0.01,abc"], "--epsilon"),
    (["--mc_samples", "1"], "at least 2 samples"),
])
def test_bad_options_exit_with_code_2(tmp_path, capsys, argv, message):
    assert main(["--root", str(tmp_path)] + argv) == 2
    assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_script_exit_code(tmp_path):
    result = subprocess.run([sys.executable, os.path.join(REPO, "asymptotic_variance.py"), "--root", str(tmp_path),
                             "--iw_steps", "0"], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and "--iw_steps 0" in result.stderr


@pytest.mark.slow
def test_pathwise_iwae_snr_decays_like_one_over_sqrt_k(tmp_path):
    argv = ["--root", str(tmp_path), "--run_id", "iwae", "--estimators", "ovis-gamma1,pathwise-iwae", "--iw_min", "4",
            "--iw_max", "64", "--iw_steps", "3", "--mc_samples", "1000", "--npoints", "16", "--silent"]
    assert main(argv) == 0
    slopes = pd.read_csv(os.path.join(tmp_path, "asymptotic-variance", "iwae", "slopes.csv")).set_index("estimator")
    assert slopes.loc["pathwise-iwae", "slope:grads/snr"] == pytest.approx(-0.5, abs=0.12)
    assert slopes.loc["ovis-gamma1", "slope:grads/snr"] == pytest.approx(0.5, abs=0.1)
