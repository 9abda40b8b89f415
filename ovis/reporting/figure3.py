"""Figure 3 of the paper: training curves of the sigmoid belief network on binarized MNIST.

Reads the ``curves.csv`` of a report made by ``report.py`` (left panel: the IW bound runs,
``--include iwbound``; right panel: the Renyi warm-up runs, ``--include iwrbound``), averages
the seeds at each step, smooths each curve with a Hann window (reflected at the ends) and
draws one colour per estimator and one line style and marker per number of particles K.
"""
import colorsys
import os
import re
from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from ovis.reporting.figures import sort_key
from ovis.reporting.style import (LINE_STYLES, MARKERS, apply_style, estimator_style, key_label, metric_label,
                                  plt, save_figure, value_text)

DEFAULT_REPORTS = {"left": "sigmoid-belief-network-inc=iwbound", "right": "sigmoid-belief-network-inc=iwrbound"}
CURVE_COLUMNS = ("run_id", "step", "metric", "value", "seed")
MARKED_POINTS = 6


@dataclass
class Figure3Options:
    figure: str = "left"
    output: str = "reports/"
    report: str = ""
    dataset: str = "binmnist"
    style_key: str = "iw"
    metric: str = "train:loss/L_k"
    window: int = 15
    desaturate: float = 0.9
    lighten: float = 1.0
    opacity: float = 0.9
    linewidth: float = 1.2
    ylim: Optional[Tuple[float, float]] = (-92.5, -86.2)

    @property
    def report_dir(self) -> str:
        """``<output>/<report>``; when absent, the one ``<output>/<report>-<id of the options>`` that
        ``report.py`` made with options other than its defaults (an error if there are several)."""
        if self.figure not in DEFAULT_REPORTS:
            raise ValueError(f"--figure {self.figure!r}: expected left or right")
        name = self.report or DEFAULT_REPORTS[self.figure]
        path = os.path.join(self.output, name)
        if os.path.isdir(path) or not os.path.isdir(self.output):
            return path
        pattern = re.compile(re.escape(name) + r"-[0-9a-f]{8}")
        found = sorted(entry for entry in os.listdir(self.output) if pattern.fullmatch(entry))
        if len(found) > 1:
            raise ValueError(f"{len(found)} reports of {name} with other options in {self.output}: {', '.join(found)}; "
                             f"choose one with --report")
        return os.path.join(self.output, found[0]) if found else path


def hann_smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average weighted by a Hann window of ``window`` points, with the series
    reflected at both ends so that the smoothed curve keeps its length and end values are
    not pulled towards zero. Windows longer than the series are shortened."""
    values = np.asarray(values, dtype=float)
    window = min(window, len(values))
    window -= 1 - window % 2  # odd, so the window is centred
    if window < 3:
        return values
    weights = np.hanning(window + 2)[1:-1]  # drop the zero end points
    half = window // 2
    padded = np.concatenate([values[half:0:-1], values, values[-2:-half - 2:-1]])
    return np.convolve(padded, weights / weights.sum(), mode="valid")


def adjust_color(color, desaturate: float, lighten: float) -> tuple:
    """Scale the saturation by ``desaturate`` and the lightness by ``lighten`` (HLS)."""
    h, l, s = colorsys.rgb_to_hls(*color[:3])
    return colorsys.hls_to_rgb(h, min(l * lighten, 1.0), s * desaturate)


def load_report_curves(options: Figure3Options) -> pd.DataFrame:
    path = os.path.join(options.report_dir, "curves.csv")
    if not os.path.exists(path):
        include = "iwbound" if options.figure == "left" else "iwrbound"
        raise FileNotFoundError(f"{path} not found: make the report first, e.g. python report.py "
                                f"--exp sigmoid-belief-network --include {include}")
    curves = pd.read_csv(path)
    for column, value in (("metric", options.metric), ("dataset", options.dataset)):
        if column in curves.columns:
            if value not in set(curves[column]):
                raise ValueError(f"{path}: no curve with {column}={value!r}; available: {sorted(set(curves[column]))}")
            curves = curves[curves[column] == value]
    missing = [c for c in ("estimator", options.style_key) if c not in curves.columns]
    if missing:
        raise ValueError(f"{path} has no column {missing}; make the report with these among --keys")
    return curves


def seed_means(curves: pd.DataFrame, options: Figure3Options) -> pd.DataFrame:
    """Mean over seeds at each step, then Hann smoothing, per line (estimator, K and any
    other attribute the report kept): columns = line attributes, ``step``, ``value``."""
    line_columns = [c for c in curves.columns if c not in CURVE_COLUMNS]
    means = curves.groupby(line_columns + ["step"], dropna=False)["value"].mean().reset_index()
    means["value"] = means.groupby(line_columns, dropna=False)["value"].transform(
        lambda v: hann_smooth(v.to_numpy(), options.window))
    return means


def draw_figure3(options: Figure3Options) -> Tuple[List[str], pd.DataFrame]:
    """Draw ``figure3_<left|right>.png|pdf`` into the report folder; return the paths and
    a table of each line's maximum and final value (after smoothing)."""
    apply_style()
    means = seed_means(load_report_curves(options), options)
    line_columns = [c for c in means.columns if c not in ("step", "value")]
    other = [c for c in line_columns if c not in ("estimator", "dataset", options.style_key)]
    k_values = sorted(means[options.style_key].unique(), key=sort_key)
    styles = {k: (LINE_STYLES[i % len(LINE_STYLES)], MARKERS[i % len(MARKERS)]) for i, k in enumerate(k_values)}

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    summary, legend_lines = [], {}
    for keys, line in means.groupby(line_columns, dropna=False, sort=False):
        attributes = dict(zip(line_columns, keys if isinstance(keys, tuple) else (keys,)))
        style = estimator_style(attributes["estimator"])
        color = adjust_color(style.color, options.desaturate, options.lighten)
        linestyle, marker = styles[attributes[options.style_key]]
        line = line.sort_values("step")
        marks = np.unique(np.linspace(0, len(line) - 1, MARKED_POINTS).astype(int))
        ax.plot(line["step"], line["value"], color=color, linestyle=linestyle, marker=marker, markevery=list(marks),
                markersize=4, alpha=options.opacity, linewidth=options.linewidth)
        label = style.label + "".join(f", {key_label(c)}={value_text(attributes[c])}" for c in other)
        legend_lines[(style.rank, label)] = Line2D([], [], color=color, linewidth=2, label=label)
        summary.append({**attributes, "max": line["value"].max(), "final": line["value"].iloc[-1],
                        "final_step": line["step"].iloc[-1]})

    handles = [legend_lines[key] for key in sorted(legend_lines)]
    handles.append(Line2D([], [], linestyle="none", label="particles"))
    handles += [Line2D([], [], color="0.3", linestyle=styles[k][0], marker=styles[k][1],
                       label=f"  {key_label(options.style_key)}={value_text(k)}") for k in k_values]
    ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_xlabel("step")
    ax.xaxis.set_major_formatter(EngFormatter(sep=""))
    ax.set_ylabel(metric_label(options.metric))
    if options.ylim:
        ax.set_ylim(*options.ylim)
    ax.set_title(f"{options.dataset}, " + ("IW bound" if options.figure == "left" else "Renyi warm-up"))
    paths = save_figure(fig, os.path.join(options.report_dir, f"figure3_{options.figure}"))
    table = pd.DataFrame(summary).sort_values(["estimator", options.style_key], key=lambda s: s.map(sort_key))
    return paths, table

