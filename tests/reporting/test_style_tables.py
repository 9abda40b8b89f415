"""Estimator display names and colours, table formatting, curve processing."""
import math

import numpy as np
import pandas as pd
import pytest

from ovis.reporting.aggregate import (PivotMetric, ReportError, aggregate_series, attribute_table, downsample_curves,
                                      estimator_key, parse_ylims, seed_statistics, smooth_curves, split_estimator_id,
                                      tukey_limits)
from ovis.reporting.runs import Run
from ovis.reporting.figure3 import hann_smooth
from ovis.reporting.style import estimator_color, estimator_label, estimator_style, sort_estimators
from ovis.reporting.tables import to_latex, to_markdown

PAPER_ESTIMATORS = ["ovis-gamma0", "ovis-gamma1", "ovis-S1-exclusive", "ovis-S10-exclusive", "ovis-S50-exclusive",
                    "vimco-arithmetic", "vimco-geometric", "tvo-part2-config1", "wake-wake", "pathwise-iwae", "stl",
                    "dreg", "reinforce"]


def test_paper_display_names():
    assert estimator_label("ovis-gamma1") == r"OVIS$_{\sim}$ ($\gamma=1$)"
    assert estimator_label("ovis-S50-exclusive") == r"OVIS$_{\mathrm{MC}}$ ($S=50$)"
    assert estimator_label("ovis-S0.3") == r"OVIS$_{\mathrm{MC}}$ ($S=0.3K$ of $K$)"
    assert estimator_label("vimco-arithmetic") == "VIMCO"
    assert estimator_label("tvo-part5-config2") == "TVO (5 part., config2)"
    assert estimator_label("pathwise-iwae") == "IWAE"
    assert estimator_label("dreg") == "IWAE-DReG"
    assert estimator_label("wake-wake") == "RWS (wake-wake)"


def test_colours_are_fixed_per_estimator_and_distinct():
    colours = [estimator_color(e) for e in PAPER_ESTIMATORS]
    assert len(set(colours)) == len(PAPER_ESTIMATORS)
    # The colour depends on the id only, not on which other estimators are drawn.
    assert estimator_color("ovis-gamma1") == estimator_style("ovis-gamma1").color
    assert estimator_color("unknown-estimator") == estimator_color("unknown-estimator")
    assert all(0 <= c <= 1 for colour in colours for c in colour)


def test_legend_order_follows_the_paper_families():
    shuffled = ["reinforce", "dreg", "vimco-arithmetic", "ovis-S50-exclusive", "ovis-gamma1", "ovis-S1-exclusive",
                "ovis-gamma0", "tvo-part2-config1"]
    assert sort_estimators(shuffled) == ["ovis-gamma0", "ovis-gamma1", "ovis-S1-exclusive", "ovis-S50-exclusive",
                                         "vimco-arithmetic", "tvo-part2-config1", "dreg", "reinforce"]


def test_split_estimator_id():
    assert split_estimator_id("ovis-gamma1") == {"estimator": "ovis-gamma", "gamma": 1.0}
    assert split_estimator_id("ovis-S50-exclusive") == {"estimator": "ovis-S-exclusive", "S": 50}
    assert split_estimator_id("ovis-S2.0-exclusive") == {"estimator": "ovis-S-exclusive", "S_per_K": 2.0}
    assert split_estimator_id("tvo-part5-beta2", taken={"beta"}) == {"estimator": "tvo", "part": 5,
                                                                     "estimator_beta": 2}
    assert split_estimator_id("reinforce") == {"estimator": "reinforce"}
    assert split_estimator_id("an-old-id") == {"estimator": "an-old-id"}


def test_a_fraction_of_k_is_neither_labelled_nor_grouped_as_a_number_of_particles():
    """ovis-S2.0-exclusive has 2K auxiliary particles, ovis-S2-exclusive has 2 (estimators/config.py)."""
    assert estimator_label("ovis-S2.0-exclusive") == r"OVIS$_{\mathrm{MC}}$ ($S=2K$)"
    assert estimator_label("ovis-S2-exclusive") == r"OVIS$_{\mathrm{MC}}$ ($S=2$)"
    assert estimator_color("ovis-S2.0-exclusive") != estimator_color("ovis-S2-exclusive")
    assert estimator_label("ovis-S2") == r"OVIS$_{\mathrm{MC}}$ ($S=2$ of $K$)"
    assert estimator_key("ovis-S2.0-exclusive") != estimator_key("ovis-S2-exclusive")
    # Spellings of one estimator share one group.
    assert estimator_key("ovis-gamma1.0") == estimator_key("ovis-gamma1") == "ovis-gamma1"
    assert estimator_key("Pathwise") == "pathwise"
    assert estimator_key("ovis-arithmetic-gamma1") == "ovis-gamma1-arithmetic"
    runs = [Run(f"r{i}", "success", config={"estimator": e, "iw": 5, "seed": 1})
            for i, e in enumerate(["ovis-S2-exclusive", "ovis-S2.0-exclusive", "ovis-gamma1", "ovis-gamma1.0"])]
    table = attribute_table(runs)
    assert table["estimator"].tolist() == ["ovis-S2-exclusive", "ovis-S2.0-exclusive", "ovis-gamma1", "ovis-gamma1"]
    assert len({estimator_label(e) for e in table["estimator"]}) == 3
    parsed = attribute_table(runs, parse_estimator_args=True)
    assert parsed["S"].iloc[0] == 2 and math.isnan(parsed["S"].iloc[1])
    assert math.isnan(parsed["S_per_K"].iloc[0]) and parsed["S_per_K"].iloc[1] == 2.0
    assert parsed["estimator"].tolist()[:2] == ["ovis-S-exclusive", "ovis-S-exclusive"]


def test_aggregations_ignore_non_finite_values():
    values = np.array([1.0, math.nan, 4.0, -2.0, math.inf, 3.0])
    assert aggregate_series(values, "max") == 4.0
    assert aggregate_series(values, "min") == -2.0
    assert aggregate_series(values, "mean") == 1.5
    assert aggregate_series(values, "last") == 3.0
    assert math.isnan(aggregate_series(np.array([math.nan]), "max"))
    assert PivotMetric.parse("avg:train:grads/snr") == PivotMetric("mean", "train:grads/snr")
    with pytest.raises(ReportError, match="expected <agg>:<split>:<key>"):
        PivotMetric.parse("max:L_k")


def test_parse_ylims():
    assert parse_ylims(["train:loss/L_k:-94:-88", "test:grads/snr:0.01:10"]) == {
        "train:loss/L_k": (-94.0, -88.0), "test:grads/snr": (0.01, 10.0)}
    with pytest.raises(ReportError, match="expected <split>:<key>:<min>:<max>"):
        parse_ylims(["train:loss/L_k:-94"])


def test_seed_statistics_mean_sample_std_and_count():
    per_run = pd.DataFrame({"estimator": ["a", "a", "a", "b"], "value": [1.0, 2.0, 6.0, 5.0]})
    stats = seed_statistics(per_run, ["estimator"], ["value"])
    assert stats.loc["a", ("value", "mean")] == 3.0
    assert stats.loc["a", ("value", "std")] == pytest.approx(math.sqrt(7.0))
    assert stats.loc["a", ("value", "n")] == 3
    assert math.isnan(stats.loc["b", ("value", "std")])


def test_ema_and_downsampling():
    curves = pd.DataFrame({"run_id": "r", "metric": "m", "step": np.arange(10) * 10, "value": np.arange(10.0)})
    smoothed = smooth_curves(curves, 0.5)["value"].to_numpy()
    expected = [0.0]
    for x in range(1, 10):
        expected.append(0.5 * expected[-1] + 0.5 * x)
    np.testing.assert_allclose(smoothed, expected)
    binned = downsample_curves(curves, 5)
    assert len(binned) == 5
    np.testing.assert_allclose(binned["value"], [0.5, 2.5, 4.5, 6.5, 8.5])
    np.testing.assert_allclose(binned["step"], [5, 25, 45, 65, 85])
    assert downsample_curves(curves, 0) is curves
    with pytest.raises(ReportError, match="smoothing factor"):
        smooth_curves(curves, 1.0)


def test_tukey_limits_ignore_outliers():
    values = np.concatenate([np.linspace(-90, -88, 50), [-400.0]])
    low, high = tukey_limits(values)
    assert -92 < low < -90 and -88 < high < -87
    low, high = tukey_limits(np.array([1e-3, 1e-2, 1e-1]), log=True)
    assert low < 1e-3 < 1e-1 < high
    # A short curve: its first point is 1 of 8 values, shown rather than clipped off the panel.
    short = np.array([-4300.0, -3300, -3250, -3200, -3180, -3160, -3150, -3140])
    low, high = tukey_limits(short)
    assert low < -4300 and high > -3140


def test_markdown_and_latex_tables_bold_the_best_of_each_block():
    per_run = pd.DataFrame({"iw": [5, 5, 5, 5, 50, 50], "estimator": ["a", "a", "b", "b", "a", "b"],
                            "max:test:loss/L_k": [-90.0, -92.0, -89.0, -89.5, -85.0, -86.0]})
    stats = seed_statistics(per_run, ["iw", "estimator"], ["max:test:loss/L_k"])
    markdown = to_markdown(stats, block_columns=["iw"])
    lines = markdown.splitlines()
    assert lines[0] == "| iw | estimator | max:test:loss/L_k | runs |"
    assert lines[2] == "| 5 | a | -91.00 ± 1.41 [-92.00, -90.00] | 2 |"  # two seeds: their range
    assert lines[3] == "| 5 | b | **-89.25 ± 0.35 [-89.50, -89.00]** | 2 |"
    assert lines[4] == "| 50 | a | **-85.00** | 1 |"
    latex = to_latex(stats, block_columns=["iw"], float_format=".1f")
    assert r"5 & b & \textbf{-89.2 $\pm$ 0.4 [-89.5, -89.0]} & 2 \\" in latex
    assert r"max:test:loss/L\_k" in latex


def test_hann_smoothing_keeps_length_constants_and_lines():
    constant = np.full(30, -88.0)
    np.testing.assert_allclose(hann_smooth(constant, 15), constant)
    line = np.linspace(0, 1, 40)
    smoothed = hann_smooth(line, 15)
    assert smoothed.shape == line.shape
    np.testing.assert_allclose(smoothed[7:-7], line[7:-7], atol=1e-12)  # symmetric window keeps lines
    noisy = np.sin(np.arange(100)) + np.linspace(0, 1, 100)
    assert np.std(np.diff(hann_smooth(noisy, 15))) < 0.1 * np.std(np.diff(noisy))
    assert hann_smooth(np.array([1.0, 2.0]), 15).tolist() == [1.0, 2.0]


def test_attribute_table_merges_options_and_drops_bookkeeping():
    from ovis.reporting.aggregate import attribute_table, variant_columns
    from ovis.reporting.runs import Run

    grid = [("ovis-gamma1", 5, 1, 0.0, "iw"), ("ovis-gamma1", 5, 2, 0.0, "iw"), ("ovis-gamma1", 5, 1, 0.7, "iwr"),
            ("vimco-arithmetic", 5, 1, 0.0, "iw")]
    runs = [Run(f"r{i}", "success", "/nowhere", {"estimator": e, "iw": k, "seed": s, "root": "/tmp", "hash": "x",
                                               "alpha": a, "id": tag})
            for i, (e, k, s, a, tag) in enumerate(grid)]
    table = attribute_table(runs, merge_args=("estimator", "alpha"))
    assert "root" not in table.columns and "hash" not in table.columns
    assert list(table["estimator-alpha"]) == ["ovis-gamma1-0.0", "ovis-gamma1-0.0", "ovis-gamma1-0.7",
                                              "vimco-arithmetic-0.0"]
    # alpha separates runs the keys do not; id says nothing more than alpha and is left out.
    assert variant_columns(table.drop(columns=["estimator-alpha"]), ["estimator", "iw"]) == ["alpha"]
    with pytest.raises(ReportError, match="expected two run options"):
        attribute_table(runs, merge_args=("estimator", "nope"))


def test_tukey_limits_without_fences_cover_the_data():
    low, high = tukey_limits(np.array([-400.0, -90.0, -89.0, -88.0]), whisker=math.inf)
    assert low < -400 and -88 < high < -70
    low, high = tukey_limits(np.array([2.0, 2.0]), whisker=math.inf)  # a constant still gets a range
    assert low < 2 < high


def test_curve_panels_contain_every_point_but_a_long_runs_first_evaluations():
    from ovis.reporting.figures import _set_y_scale
    from ovis.reporting.style import plt

    fig, ax = plt.subplots()
    settled = [np.array([-5.40, -5.35, -5.33, -5.30, -5.29, -5.28, -5.27]) + 0.01 * i for i in range(8)]
    dipping = np.array([-5.41, -5.60, -5.58, -5.47, -5.50, -5.43, -5.48])  # 2 of 63 points, beyond the fences
    _set_y_scale(ax, "train:loss/L_k", settled + [dipping], {})
    low, high = ax.get_ylim()
    assert low < -5.60 and high > -5.20
    long_run = np.concatenate([[-400.0], np.linspace(-95, -88, 99)])  # a first evaluation of a long run
    _set_y_scale(ax, "train:loss/L_k", [long_run], {})
    low, high = ax.get_ylim()
    assert -100 < low < -95 and high > -88
    plt.close(fig)
