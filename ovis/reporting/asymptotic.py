"""Figure 1 of the paper: SNR, variance and magnitude of gradient estimates against K.

Input tables are those written by ``asymptotic_variance.py`` (``ovis/analysis/asymptotic.py``):
``data.csv`` (one row per epsilon, estimator and K), ``coordinates.csv`` (per coordinate) and
``grads.csv`` (the gradient samples of the tracked coordinate).
"""
import os
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from scipy.stats import gaussian_kde

from ovis import records
from ovis.analysis.asymptotic import IDENTITY, figure_title, format_slopes, slope_table
from ovis.reporting.panels import estimator_grid, estimator_handles
from ovis.reporting.style import apply_style, estimator_style, plt, save_figure, sort_estimators, value_text
from ovis.reporting.tables import markdown_list_table

PANELS = (("grads/snr", "SNR"), ("grads/variance", "variance"), ("grads/magnitude", r"$|\mathbb{E}[g]|$"))
REFERENCE_STYLE = dict(color="0.55", linestyle=":", linewidth=1.0)
OUTLIER_FENCE = 3.0  # histogram samples beyond 3 IQR from the quartiles are left out


def _reference_lines(ax, iw: np.ndarray, anchor: float):
    """Dotted sqrt(K) and 1/sqrt(K) lines through ``anchor`` at the smallest K."""
    k = np.geomspace(iw.min(), iw.max(), 50)
    ax.plot(k, anchor * np.sqrt(k / k[0]), **REFERENCE_STYLE)
    ax.plot(k, anchor * np.sqrt(k[0] / k), **REFERENCE_STYLE)


def plot_asymptotic(data: pd.DataFrame, path: str, coordinates: Optional[pd.DataFrame] = None,
                    draw_individual: bool = False, title: str = "") -> List[str]:
    """Rows = perturbations epsilon, columns = SNR, variance, |E g| against K on log-log axes,
    one line (and marker, so that overlapping lines stay visible) per estimator, the legend
    giving the fitted SNR slope. With ``draw_individual``, thin lines show every coordinate
    of ``coordinates``."""
    epsilons = sorted(data["epsilon"].unique())
    individual = {"grads/snr": "snr", "grads/variance": "variance", "grads/magnitude": "magnitude"}
    rows = [(epsilon, data[data["epsilon"] == epsilon]) for epsilon in epsilons]

    def coordinate_lines(ax, column, estimator, line, color):
        if draw_individual and coordinates is not None:
            per = coordinates[(coordinates["epsilon"] == line["epsilon"].iloc[0])
                              & (coordinates["estimator"] == estimator)]
            for _, coordinate in per.groupby("coordinate"):
                coordinate = coordinate.sort_values("iw")
                ax.plot(coordinate["iw"], coordinate[individual[column]], color=color, alpha=0.15, linewidth=0.6)

    def decorate(ax, row, column, subset):
        if column == "grads/snr" and not subset.empty:
            start = subset[subset["iw"] == subset["iw"].min()][column]
            _reference_lines(ax, subset["iw"].to_numpy(float), float(np.exp(np.log(start).mean())))
        epsilon = f"  ($\\epsilon={value_text(epsilons[row])}$)" if len(epsilons) > 1 else ""
        ax.set_title(dict(PANELS)[column] + epsilon)

    fig, _, markers = estimator_grid(rows, [column for column, _ in PANELS], data["estimator"].unique(),
                                     coordinate_lines, decorate)
    slopes = slope_table(data)
    suffixes = {}
    if len(slopes) and len(epsilons) == 1:
        suffixes = {e: f" (SNR slope {v:+.2f})" for e, v in zip(slopes["estimator"], slopes["slope:grads/snr"])}
    handles = estimator_handles(markers, suffixes)
    handles.append(Line2D([], [], label=r"$\propto\sqrt{K}$, $\propto 1/\sqrt{K}$", **REFERENCE_STYLE))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 3))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


def _fences(values: np.ndarray) -> np.ndarray:
    q1, q3 = np.percentile(values, [25, 75])
    iqr = q3 - q1
    return values[(values >= q1 - OUTLIER_FENCE * iqr) & (values <= q3 + OUTLIER_FENCE * iqr)]


def plot_gradient_distributions(grads: pd.DataFrame, path: str) -> List[str]:
    """Histogram and KDE of the tracked coordinate's gradient samples for the smallest,
    median and largest K (columns; rows = epsilon); dotted line at each estimator's mean,
    solid line at zero."""
    epsilons = sorted(grads["epsilon"].unique())
    estimators = sort_estimators(grads["estimator"])
    fig, axes = plt.subplots(len(epsilons), 3, figsize=(12, 2.8 * len(epsilons)), squeeze=False)
    for row, epsilon in enumerate(epsilons):
        subset = grads[grads["epsilon"] == epsilon]
        ks = sorted(subset["iw"].unique())
        for col, k in enumerate([ks[0], ks[len(ks) // 2], ks[-1]]):
            ax = axes[row][col]
            at_k = subset[subset["iw"] == k]
            kept_by_estimator = {e: _fences(at_k[at_k["estimator"] == e]["grad"].to_numpy(float)) for e in estimators}
            pooled = np.concatenate([v for v in kept_by_estimator.values() if v.size >= 2] or [np.zeros(1)])
            edges = np.histogram_bin_edges(pooled, bins=60)  # shared, so the widths compare
            for estimator in estimators:
                samples = at_k[at_k["estimator"] == estimator]["grad"].to_numpy(float)
                if samples.size < 2:
                    continue
                color = estimator_style(estimator).color
                kept = kept_by_estimator[estimator]
                ax.hist(kept, bins=edges, density=True, color=color, alpha=0.3)
                if np.ptp(kept) > 0:
                    grid = np.linspace(kept.min(), kept.max(), 200)
                    ax.plot(grid, gaussian_kde(kept)(grid), color=color, linewidth=1.2)
                ax.axvline(samples.mean(), color=color, linestyle=":", linewidth=1.2)
            ax.axvline(0.0, color="black", linewidth=0.8)
            ax.set_title(f"$K={value_text(k)}$" + (f", $\\epsilon={value_text(epsilon)}$" if len(epsilons) > 1 else ""))
            ax.set_yticks([])
            if row == len(epsilons) - 1:
                ax.set_xlabel("gradient of the tracked coordinate")
    handles = [Line2D([], [], color=estimator_style(e).color, linewidth=2, label=estimator_style(e).label)
               for e in estimators]
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(len(handles), 4))
    fig.tight_layout()
    return save_figure(fig, path)


def read_asymptotic_runs(exp_dir: str, skip: str = "") -> Tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, List[str]]:
    """Concatenate ``data.csv``, ``coordinates.csv`` and ``grads.csv`` of every run folder of
    ``exp_dir`` (folders whose name contains ``skip`` are left out); returns the three tables
    and the run ids. The runs must analyse the same parameters (``key_filter``)."""
    tables = {"data": [], "coordinates": [], "grads": []}
    run_ids = []
    for name in sorted(os.listdir(exp_dir)):
        run_dir = os.path.join(exp_dir, name)
        if name.startswith(".") or (skip and skip in name) or not os.path.exists(os.path.join(run_dir, "data.csv")):
            continue
        run_ids.append(name)
        for table in tables:
            path = os.path.join(run_dir, f"{table}.csv")
            if os.path.exists(path) and os.path.getsize(path) > 0:
                tables[table].append(pd.read_csv(path).assign(run_id=name))
    if not run_ids:
        raise FileNotFoundError(f"no run with a data.csv in {exp_dir}; run asymptotic_variance.py first")
    data, coordinates, grads = (pd.concat(tables[t], ignore_index=True) if tables[t] else pd.DataFrame()
                                for t in ("data", "coordinates", "grads"))
    params = sorted(data["param"].astype(str).unique()) if "param" in data else []
    if len(params) > 1:
        raise ValueError(f"runs of {exp_dir} analyse different parameters {params}; use --filter to report "
                         f"one key_filter at a time")
    return data, coordinates, grads, run_ids


def seed_average(data: pd.DataFrame) -> pd.DataFrame:
    """Average the numeric columns of rows with the same (epsilon, estimator, K) (several
    seeds or runs)."""
    numeric = [c for c in data.columns if c not in IDENTITY and pd.api.types.is_numeric_dtype(data[c])]
    return data.groupby(list(IDENTITY), as_index=False, sort=False)[numeric].mean()


def draw_figures(directory: str, data: pd.DataFrame, coordinates: pd.DataFrame, grads: pd.DataFrame, title: str = "",
                 draw_individual: bool = False) -> List[str]:
    """``asymptotic-gradients`` and, with gradient samples, ``asymptotic-gradients-dist`` (PNG and
    PDF) in ``directory``; returns the PNG paths. ``asymptotic_variance.py`` draws a run's figures
    with it (``ovis.apps.asymptotic.main``), the report those of an experiment."""
    apply_style()
    paths = plot_asymptotic(data, os.path.join(directory, "asymptotic-gradients"), coordinates, draw_individual,
                            title=title)[:1]
    if not grads.empty:
        paths += plot_gradient_distributions(grads, os.path.join(directory, "asymptotic-gradients-dist"))[:1]
    return paths


def build_asymptotic_report(root: str, output: str, exp: str, skip: str = "", draw_individual: bool = False,
                            float_format: str = "+.3f", log=print) -> str:
    """``reports/<exp>/``: the figures, ``data.csv`` (seed-averaged), ``slopes.csv|md`` and an
    ``index.md``; returns the folder."""
    data, coordinates, grads, run_ids = read_asymptotic_runs(os.path.join(root, exp), skip)
    directory = os.path.join(output, exp)
    os.makedirs(directory, exist_ok=True)
    averaged = seed_average(data)
    averaged.to_csv(os.path.join(directory, "data.csv"), index=False)
    slopes = slope_table(averaged)
    slopes.to_csv(os.path.join(directory, "slopes.csv"), index=False)
    slopes_md = markdown_list_table(
        [[format(v, float_format) if c.startswith("slope:") else value_text(v) for c, v in row.items()]
         for row in slopes.to_dict("records")], list(slopes.columns))
    per_coordinate = None
    if draw_individual and not coordinates.empty:
        per_coordinate = coordinates.groupby(list(IDENTITY) + ["coordinate"], as_index=False)[
            ["magnitude", "variance", "snr"]].mean()
    config = records.read_config(os.path.join(root, exp, run_ids[0])) or {}
    title = figure_title(config) if {"D", "npoints", "epsilon", "key_filter", "mc_samples"} <= set(config) else ""
    figures = draw_figures(directory, averaged, per_coordinate, grads, title, draw_individual)
    with open(os.path.join(directory, "index.md"), "w") as f:
        f.write(f"# Asymptotic gradient analysis: {exp}\n\n{len(run_ids)} run(s): "
                + ", ".join(f"`{r}`" for r in run_ids) + "\n\n## Log-log slopes against K\n\n" + slopes_md + "\n"
                + "".join(f"![{os.path.basename(p)}]({os.path.basename(p)})\n\n" for p in figures))
    log("log-log slopes against K:\n" + format_slopes(slopes, float_format))
    return directory
