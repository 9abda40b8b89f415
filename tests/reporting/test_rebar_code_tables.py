"""The REBAR code's tables beside ovis's runs: the learned variants land in the rows of the
REBAR code's estimators, seeds are averaged, and the wide form puts an A/B's lines side by side."""
import runpy
from pathlib import Path

import pandas as pd

SCRIPT = runpy.run_path(str(Path(__file__).resolve().parents[2] / "scripts" / "rebar_code_tables.py"))


def run(run_id, seed, offset):
    rows = [{"step": step, "split": "online", "metric": f"online:grad_moving_variance/{tracked}",
             "value": value * (1 + offset)}
            for step in (994, 1988) for tracked, value in (("rebar-learned-eta", 0.05), ("reinforce-baseline", 12.0))]
    rows += [{"step": step, "split": "online", "metric": "online:loss/L_k", "value": -250.0 + offset}
             for step in (994, 1988)]
    return {"id": run_id, "seed": seed, "dataset": "omniglot", "estimator": "simple-muprop-learned"}, pd.DataFrame(rows)


def test_learned_variants_are_the_rows_of_the_code_estimators_and_the_wide_form_lists_each_id():
    runs = SCRIPT["load_runs"]([run("base", 1, 0.0), run("base", 2, 0.2), run("other", 1, 1.0)])
    assert set(runs.quantity) == {"rebar", "reinforce-baseline", "ELBO"}
    lines = SCRIPT["table"](runs, "omniglot")
    assert "| ELBO | ovis base | 2 | -249.90 ± 0.10 | -249.90 ± 0.10 |" in lines
    assert any(line.startswith("| log variance rebar | REBAR code | 1 | -3.54 | -3.66 |") for line in lines)
    wide = SCRIPT["wide_table"](runs, "omniglot")
    assert wide[0] == "| source | rebar 959 | rebar 1918 | reinforce-baseline 959 | reinforce-baseline 1918 |"
    assert wide[2] == "| REBAR code | -3.54 | -3.66 | 2.76 | 2.27 |"
    # the mean over the seeds of log(0.05) and log(0.06)
    assert wide[3].startswith("| ovis base | -2.90 | -2.90 | 2.58 | 2.58 |")
    assert wide[4].startswith("| ovis other | -2.30 | -2.30 | 3.18 | 3.18 |")
