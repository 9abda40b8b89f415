"""The CPU-scale Figure 3 table: seed means and standard errors, ranks within each panel beside
the paper's, and Kendall's tau between the two test orders."""
import math
import runpy
from pathlib import Path

import pandas as pd

SCRIPT = runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "figure3_cpu_table.py"))


def runs():
    # IW panel: ovis's test order is the paper's reversed for the first three estimators
    test = {"ovis-S50-exclusive": -125.0, "ovis-S10-exclusive": -124.0, "ovis-S1-exclusive": -123.0,
            "ovis-gamma1": -126.0}
    rows = [{"panel": "IW", "estimator": estimator, "seed": seed, "step": 20840, "train": value - 5 + seed,
             "test": value + seed} for estimator, value in test.items() for seed in (1, 2)]
    rows.append({"panel": "Rényi", "estimator": "tvo-part2-config1", "seed": 1, "step": 20840, "train": -120.0,
                 "test": -118.0})
    return pd.DataFrame(rows)


def test_seed_means_ranks_and_the_paper_side_by_side():
    table = SCRIPT["summary"](runs()).set_index(["panel", "estimator"])
    s1 = table.loc[("IW", "ovis-S1-exclusive")]
    assert (s1.seeds, s1.test_mean, s1.test_rank, s1.paper_rank, s1.paper_test) == (2, -121.5, 1, 3, -91.06)
    assert math.isclose(s1.test_sem, 0.5)
    assert table.loc[("IW", "ovis-gamma1")].test_rank == 4 and table.loc[("IW", "ovis-gamma1")].paper_rank == 4
    lines = SCRIPT["markdown"](SCRIPT["summary"](runs()))
    assert "| IW | OVIS-MC (S=1) | 2 | -126.50 ± 0.50 | -121.50 ± 0.50 | 1 | -89.82 | -91.06 | 3 |" in lines
    assert "| Rényi | TVO (config1) | 1 | -120.00 | -118.00 | 1 | -88.80 | -90.48 | 1 |" in lines
    # 4 estimators: pairs (S50, S10, S1) reversed (3 discordant), gamma1 last in both (3 concordant)
    assert any(line.startswith("IW: Kendall's tau between ovis's and the paper's test orders +0.00") for line in lines)
    assert not any(line.startswith("Rényi: Kendall") for line in lines)  # one estimator: no order to compare
