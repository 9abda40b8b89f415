"""Figure 3 at CPU scale beside the paper: the final L_1000 of every configuration of
``sigmoid-belief-network-cpu`` (mean ± standard error over seeds, train and test) and each
estimator's rank in its panel, next to the paper's K = 5 values (train L_5000 at 4e6 steps, test
L_5000 at its best over training) and ranks, with Kendall's tau between the two test orders.

    python scripts/figure3_cpu_table.py [--exp sigmoid-belief-network-cpu] [--root runs] [--output reports]

prints the table (Markdown) and writes it to ``<output>/<exp>/figure3-table.md``. Runs whose last
evaluation comes before the experiment's last step (still running, or cut) are left out and named.
"""
import math
import os
import sys

import pandas as pd
from scipy.stats import kendalltau

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ovis.cli import ArgumentParser  # noqa: E402
from ovis.estimators.config import describe_estimator_id  # noqa: E402
from ovis.reporting.runs import add_experiment_options, read_experiment  # noqa: E402

# The paper's Figure 3 at K = 5 (PAPER_RESULTS.md of the shared folder): (panel, estimator) ->
# (train L_5000 at 4e6 steps, test L_5000 at its best over training); None where not printed
PAPER = {
    ("IW", "vimco-arithmetic"): (-90.37, -91.46), ("IW", "ovis-gamma0"): (-90.38, -91.48),
    ("IW", "ovis-gamma1"): (-90.14, -91.35), ("IW", "ovis-S1-exclusive"): (-89.82, -91.06),
    ("IW", "ovis-S10-exclusive"): (-89.30, -90.6), ("IW", "ovis-S50-exclusive"): (-89.25, -90.55),
    ("Rényi", "tvo-part2-config1"): (-88.80, -90.48), ("Rényi", "ovis-gamma0"): (-88.18, None),
    ("Rényi", "ovis-gamma1"): (-88.17, -89.89), ("Rényi", "ovis-S1-exclusive"): (-88.37, -89.95),
    ("Rényi", "ovis-S10-exclusive"): (-88.2, -89.85), ("Rényi", "ovis-S50-exclusive"): (-88.21, -89.82),
}
PANELS = {"iwbound": "IW", "iwrbound": "Rényi"}


def final_values(runs) -> pd.DataFrame:
    """One row per run (``(config, metrics)``): panel, estimator, seed, last step, and the last train and test L_k."""
    rows = []
    for config, metrics in runs:
        row = {"panel": PANELS.get(config.get("id"), config.get("id")), "estimator": config["estimator"],
               "seed": config["seed"], "step": int(metrics.step.max())}
        for split in ("train", "test"):
            values = metrics[metrics.metric == f"{split}:loss/L_k"].sort_values("step")
            row[split] = values.value.iloc[-1] if len(values) else math.nan
        rows.append(row)
    return pd.DataFrame(rows)


def summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (panel, estimator): seeds, mean and standard error of train and test, ranks in the panel."""
    grouped = runs.groupby(["panel", "estimator"], sort=False)
    table = grouped[["train", "test"]].agg(["mean", "sem"])
    table.columns = [f"{split}_{stat}" for split, stat in table.columns]
    table["seeds"], table["step"] = grouped.seed.nunique(), grouped.step.min()
    table = table.reset_index()
    table["paper_train"] = [PAPER.get(key, (None, None))[0] for key in zip(table.panel, table.estimator)]
    table["paper_test"] = [PAPER.get(key, (None, None))[1] for key in zip(table.panel, table.estimator)]
    for column, source in (("test_rank", "test_mean"), ("paper_rank", "paper_test")):
        table[column] = table.groupby("panel")[source].rank(ascending=False).astype("Int64")
    table["panel_order"] = table.panel.map({panel: i for i, panel in enumerate(PANELS.values())})
    return table.sort_values(["panel_order", "paper_rank", "estimator"]).drop(columns="panel_order")


def cell(mean: float, error: float) -> str:
    return f"{mean:.2f}" if math.isnan(error) else f"{mean:.2f} ± {error:.2f}"


def markdown(table: pd.DataFrame) -> list:
    step = int(table.step.max())
    lines = [f"| bound | estimator | seeds | L_1000 train, step {step:,} | L_1000 test, step {step:,} | rank (test) "
             "| paper: train at 4e6 | paper: test, best | paper rank (test) |", "|---|---|---|---|---|---|---|---|---|"]
    for row in table.itertuples():
        paper = ["" if value is None or pd.isna(value) else f"{value:.2f}"
                 for value in (row.paper_train, row.paper_test)]
        lines.append(f"| {row.panel} | {describe_estimator_id(row.estimator).label} | {row.seeds} | "
                     f"{cell(row.train_mean, row.train_sem)} | {cell(row.test_mean, row.test_sem)} | {row.test_rank} | "
                     f"{paper[0]} | {paper[1]} | {'' if pd.isna(row.paper_rank) else row.paper_rank} |")
    lines.append("")
    for panel, group in table.dropna(subset=["paper_test"]).groupby("panel", sort=False):
        if len(group) < 3:
            continue
        tau, p_value = kendalltau(group.test_mean, group.paper_test)
        lines.append(f"{panel}: Kendall's tau between ovis's and the paper's test orders {tau:+.2f} "
                     f"({len(group)} estimators, p = {p_value:.2f})")
    return lines


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_experiment_options(parser, "sigmoid-belief-network-cpu", "folder receiving <exp>/figure3-table.md")
    args = parser.parse_args(argv)
    runs = final_values(read_experiment(parser, args.root, args.exp))
    last = runs.step.max()  # runs still running or cut before it are left out, and named
    lines = markdown(summary(runs[runs.step == last]))
    lines += [f"left out (last evaluation before step {last:,}): {row.panel} {row.estimator} seed {row.seed}, "
              f"step {row.step:,}" for row in runs[runs.step < last].itertuples()]
    os.makedirs(os.path.join(args.output, args.exp), exist_ok=True)
    with open(os.path.join(args.output, args.exp, "figure3-table.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
