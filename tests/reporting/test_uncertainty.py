"""Bootstrap intervals and the probability of improvement over seeds (``ovis.reporting.uncertainty``)."""
import math

import numpy as np
import pandas as pd
import pytest

from ovis.reporting.aggregate import seed_statistics
from ovis.reporting.tables import to_markdown
from ovis.reporting.uncertainty import improvement_table, mean_interval, probability_of_improvement


def test_the_interval_of_a_mean_holds_the_mean_and_narrows_with_more_seeds():
    few = np.array([-90.3, -90.0, -89.6])
    many = np.tile(few, 10)  # the same spread over 30 seeds
    for values in (few, many):
        low, high = mean_interval(values)
        assert values.min() - 1e-9 <= low < values.mean() < high <= values.max() + 1e-9  # percentile bootstrap
    assert np.ptp(mean_interval(many)) < 0.5 * np.ptp(mean_interval(few))
    assert mean_interval(few) == mean_interval(few)  # seeded: a report is the same at every build
    assert all(math.isnan(v) for v in mean_interval([1.0, math.nan]))
    assert mean_interval([2.0, 2.0, 2.0]) == (2.0, 2.0)


def test_probability_of_improvement_counts_pairs_and_ties():
    assert probability_of_improvement([(np.array([3.0, 4.0]), np.array([1.0, 2.0]))])[0] == 1.0
    assert probability_of_improvement([(np.array([1.0, 3.0]), np.array([2.0, 2.0]))])[0] == 0.5
    assert probability_of_improvement([(np.array([2.0]), np.array([2.0]))])[0] == 0.5
    estimate, low, high = probability_of_improvement([(np.array([1.0, 3.0, 5.0]), np.array([2.0, 4.0]))])
    assert estimate == pytest.approx(0.5) and 0 <= low <= estimate <= high <= 1 and low < high


def test_improvement_is_averaged_over_strata_not_pooled():
    """Two data sets on different scales: A wins everywhere on the first, loses everywhere on the
    second. Stratified: 0.5. Pooling the runs (the wrong way) would give 0.25."""
    per_run = pd.DataFrame({"estimator": ["a", "a", "b", "b"] * 2, "dataset": ["x"] * 4 + ["y"] * 4,
                            "value": [10, 11, 0, 1, -5, -4, 100, 101]})
    table = improvement_table(per_run, "value", "estimator", ["dataset"])
    row = table.iloc[0]
    assert (row.A, row.B, row.strata) == ("a", "b", 2) and row.probability == pytest.approx(0.5)
    pooled = improvement_table(per_run, "value", "estimator", [])
    assert pooled.probability.item() == pytest.approx(0.25)
    lower_is_better = improvement_table(per_run[per_run.dataset == "x"], "value", "estimator", [],
                                        higher_is_better=False)
    assert lower_is_better.probability.item() == 0.0


def test_the_pivot_table_shows_the_bootstrap_interval():
    per_run = pd.DataFrame({"estimator": ["a"] * 3 + ["b"], "max:test:loss/L_k": [-90.0, -91.0, -89.5, -95.0]})
    stats = seed_statistics(per_run, ["estimator"], ["max:test:loss/L_k"])
    low, high = stats.loc["a", ("max:test:loss/L_k", "ci_low")], stats.loc["a", ("max:test:loss/L_k", "ci_high")]
    assert (low, high) == mean_interval(np.array([-90.0, -91.0, -89.5]))
    assert math.isnan(stats.loc["b", ("max:test:loss/L_k", "ci_low")])
    text = to_markdown(stats)
    assert f"-90.17 ± 0.76 [{low:.2f}, {high:.2f}]" in text and "| -95.00 |" in text


def test_a_report_with_one_key_sorts_its_pivot():
    from ovis.reporting.figures import Layout
    from ovis.reporting.report import _sorted_stats
    from ovis.reporting.style import estimator_style
    per_run = pd.DataFrame({"estimator": ["vimco-arithmetic", "reinforce", "reinforce"], "v": [1.0, 2.0, 3.0]})
    stats = _sorted_stats(seed_statistics(per_run, ["estimator"], ["v"]), Layout(("estimator",)))
    ranks = {e: estimator_style(e).rank for e in ("reinforce", "vimco-arithmetic")}
    assert list(stats.index) == sorted(ranks, key=ranks.get)  # legend order, a plain (one-level) index
