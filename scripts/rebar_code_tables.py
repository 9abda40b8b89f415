"""The REBAR code's two printed tables (Tucker et al. 2017, tensorflow/models research/rebar,
README) beside ovis's runs of ``rebar-code-sbn`` (Table 1), ``rebar-code-sbn-ab`` (its A/B) and
``rebar-code-omniglot`` (Table 2): per run configuration (``--id``) and epoch, the mean ± standard
error over seeds of the training ELBO averaged over the epoch (``online:loss/L_k``), the temperature
(``online:rebar/temperature``) and the log of each tracked estimator's moving-average gradient
variance averaged over the epoch (``online:grad_moving_variance/<id>``, ``--grad_variance_mode moving``);
``rebar-learned-eta``, ``muprop-learned`` and ``simple-muprop-learned`` are in the rows of the REBAR
code's REBAR, MuProp and SimpleMuProp (``--id`` names the variant of each run).

    python scripts/rebar_code_tables.py --exp rebar-code-sbn [--root runs] [--output reports] [--wide]

prints the tables (Markdown) and writes ``<output>/<exp>/rebar-code-tables.md`` and ``.png``.
"""
import math
import os
import sys
from typing import Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ovis.cli import ArgumentParser  # noqa: E402
from ovis.reporting.runs import add_experiment_options, read_experiment  # noqa: E402
from ovis.reporting.style import apply_style  # noqa: E402

VARIANCE = "online:grad_moving_variance/"
# ovis's ids of the REBAR code's estimators with its learned control variates: their rows are those estimators'
CODE_ESTIMATOR = {"rebar-learned-eta": "rebar", "muprop-learned": "muprop", "simple-muprop-learned": "simple-muprop"}
# The REBAR code's README: SBNDynamicRebar on MNIST (task=sbn) and SBNTrackGradVariances on Omniglot
# (task=omni), learning_rate=0.0003, n_layer=2: step -> printed value
REBAR_CODE = {
    "binmnist": {"ELBO": {2084: -231.03, 4168: -156.87, 6252: -143.47, 8336: -137.65},
                 "temperature": {2084: 0.371, 4168: 0.310, 6252: 0.262, 8336: 0.223},
                 "dynamic-rebar": {2084: -3.65, 4168: -4.43, 6252: -4.86, 8336: -4.96}},
    "omniglot": {"ELBO": {959: -260.48, 1918: -206.95}, "temperature": {959: 0.384, 1918: 0.336},
                 "dynamic-rebar": {959: -3.73, 1918: -3.86}, "rebar": {959: -3.54, 1918: -3.66},
                 "simple-muprop": {959: -0.04, 1918: -0.71}, "muprop": {959: -0.03, 1918: -0.72},
                 "reinforce-baseline": {959: 2.76, 1918: 2.27}},  # its NVIL: no variance normalisation
}


def load_runs(runs) -> pd.DataFrame:
    """One row per (run, step, quantity) of the runs' ``(config, metrics)``: ``id, seed, dataset,
    step, quantity, value``; the variances as natural logs."""
    rows = []
    for config, metrics in runs:
        online = metrics[metrics.split == "online"]
        names = {"online:loss/L_k": "ELBO", "online:rebar/temperature": "temperature"}
        for metric, step, value in zip(online.metric, online.step, online.value):
            if metric.startswith(VARIANCE):
                tracked = metric[len(VARIANCE):]
                quantity, value = CODE_ESTIMATOR.get(tracked, tracked), math.log(value) if value > 0 else float("nan")
            elif metric in names:
                quantity = names[metric]
            else:
                continue
            rows.append({"id": config.get("id") or config["estimator"], "seed": config["seed"],
                         "dataset": config["dataset"], "step": int(step), "quantity": quantity, "value": value})
    return pd.DataFrame(rows)


def mean_and_error(values: pd.Series) -> str:
    if len(values) < 2:
        return f"{values.mean():.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1) / math.sqrt(len(values)):.2f}"


def columns(runs: pd.DataFrame, reference: Dict[str, Dict[int, float]]) -> List[Tuple[int, int]]:
    """(REBAR code step, ovis step) per column: the evaluations side by side in order when both
    have as many (epochs of other sizes), else every step of either."""
    ours, theirs = sorted(set(runs.step)), sorted({s for values in reference.values() for s in values})
    if theirs and ours != theirs and len(ours) == len(theirs):
        return list(zip(theirs, ours))
    return [(s, s) for s in sorted(set(ours) | set(theirs))]


def table(runs: pd.DataFrame, dataset: str) -> List[str]:
    """Markdown: one row per quantity and source (the REBAR code, then each ``--id``), one column per evaluation."""
    reference = REBAR_CODE.get(dataset, {})
    steps = columns(runs, reference)
    order = ["ELBO", "temperature"] + [q for q in reference if q not in ("ELBO", "temperature")]
    quantities = [q for q in order if q in set(runs.quantity)] + sorted(set(runs.quantity) - set(order))
    header = [f"step {theirs}" + (f" (ovis {ours})" if ours != theirs else "") for theirs, ours in steps]
    lines = ["| quantity | source | seeds | " + " | ".join(header) + " |", "|---|---|---|" + "---|" * len(steps)]
    for quantity in quantities:
        label = quantity if quantity in ("ELBO", "temperature") else f"log variance {quantity}"
        if quantity in reference:
            lines.append(f"| {label} | REBAR code | 1 | "
                         + " | ".join(f"{reference[quantity][s]:.2f}" if s in reference[quantity] else ""
                                      for s, _ in steps) + " |")
        for run_id, group in runs[runs.quantity == quantity].groupby("id"):
            cells = [mean_and_error(group[group.step == s].value) if (group.step == s).any() else "" for _, s in steps]
            lines.append(f"| {label} | ovis {run_id} | {group.seed.nunique()} | " + " | ".join(cells) + " |")
    return lines


def wide_table(runs: pd.DataFrame, dataset: str) -> List[str]:
    """Markdown: one row per source (the REBAR code, then each ``--id``, seed means), one column per
    log variance and evaluation: an A/B's lines side by side."""
    reference = REBAR_CODE.get(dataset, {})
    steps = columns(runs, reference)
    quantities = [q for q in reference if q not in ("ELBO", "temperature") and q in set(runs.quantity)]
    header = [f"{q} {theirs}" for q in quantities for theirs, _ in steps]
    lines = ["| source | " + " | ".join(header) + " |", "|---|" + "---|" * len(header)]
    lines.append("| REBAR code | " + " | ".join(f"{reference[q].get(theirs, math.nan):.2f}" for q in quantities
                                                  for theirs, _ in steps) + " |")
    means = runs.groupby(["id", "quantity", "step"]).value.mean()
    for run_id in sorted(set(runs.id)):
        lines.append(f"| ovis {run_id} | " + " | ".join(
            f"{means.get((run_id, q, ours), math.nan):.2f}" for q in quantities for _, ours in steps) + " |")
    return lines


def plot(runs: pd.DataFrame, dataset: str, path: str) -> None:
    """ELBO and log variances against the step: ovis's mean ± standard error (lines), the REBAR code (crosses)."""
    apply_style()
    reference = REBAR_CODE.get(dataset, {})
    panels: Dict[str, List[str]] = {"training ELBO": ["ELBO"],
                                    "log gradient variance": sorted(set(runs.quantity) - {"ELBO", "temperature"})}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, (title, quantities) in zip(axes, panels.items()):
        for i, quantity in enumerate(quantities):
            color = plt.get_cmap("tab10")(i)
            for j, (run_id, group) in enumerate(runs[runs.quantity == quantity].groupby("id")):
                stats = group.groupby("step").value.agg(["mean", "std", "count"])
                error = (stats["std"] / stats["count"] ** 0.5).fillna(0)
                axis.errorbar(stats.index, stats["mean"], yerr=error, color=color, marker="o", markersize=3,
                              linestyle=["-", "--", ":", "-."][j % 4], label=f"ovis {run_id}: {quantity}")
            if quantity in reference:
                points = reference[quantity]
                axis.plot(list(points), list(points.values()), "x", color=color, markersize=8,
                          label=f"REBAR code: {quantity}")
        axis.set_title(f"{dataset}: {title}")
        axis.set_xlabel("step")
        axis.legend(fontsize=6)
    figure.tight_layout()
    figure.savefig(path, dpi=80)


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    add_experiment_options(parser, "rebar-code-sbn", "folder receiving <exp>/rebar-code-tables.{md,png}")
    parser.add_argument("--wide", action="store_true",
                        help="one row per source and one column per log variance and evaluation (an A/B's lines "
                             "side by side), instead of one row per quantity and source")
    args = parser.parse_args(argv)
    runs = load_runs(read_experiment(parser, args.root, args.exp))
    if runs.empty:
        parser.error(f"no online metrics in the runs of {os.path.join(args.root, args.exp)}: they are logged by "
                     f"--grad_variance_mode moving runs; run the experiment first: python manager.py --exp {args.exp}")
    out_dir = os.path.join(args.output, args.exp)
    os.makedirs(out_dir, exist_ok=True)
    lines = []
    for dataset, group in runs.groupby("dataset"):
        lines += [f"## {args.exp}: {dataset}", ""] + (wide_table if args.wide else table)(group, dataset) + [""]
        plot(group, dataset, os.path.join(out_dir, f"rebar-code-tables-{dataset}.png"))
    with open(os.path.join(out_dir, "rebar-code-tables.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
