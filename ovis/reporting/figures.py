"""The report's figures: training curves, the detailed grid and the pivot plot.

Keys give roles (``Layout``): with ``--keys dataset,estimator,iw`` the data set makes the
panels (category), the estimator the colour (hue) and K the x axis of the pivot plot and the
line style of the curves; a fourth key sets markers. Lines are means over seeds with a
shaded band: the 95% bootstrap interval of the mean in the pivot plot, +/- one standard
deviation on the training curves.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import EngFormatter

from ovis.reporting.aggregate import tukey_limits
from ovis.reporting.uncertainty import mean_interval
from ovis.reporting.style import (LINE_STYLES, LOG_SCALE_KEYS, MARKERS, estimator_style, key_label, metric_label,
                                  plain_log_ticks, plt, save_figure, uses_log_scale, value_text, variant_color)

BAND_ALPHA = 0.15
TRANSIENT_SHARE = 0.1  # the first 10% of a curve's evaluations may be cut off its panel
MARKERS_PER_LINE = 6


def sort_key(value):
    """Numbers before text, numbers by value (so K = 5, 10, 50 and not 10, 5, 50)."""
    try:
        return (0, float(value), "")
    except (TypeError, ValueError):
        return (1, 0.0, str(value))


@dataclass(frozen=True)
class Layout:
    """Roles of the report keys: one key -> hue; two -> hue, x; three -> category, hue, x;
    four -> category, hue, x, style. ``variants`` are the extra varying attributes that
    split a hue into several lines (e.g. with and without warm-up)."""
    keys: Tuple[str, ...]
    variants: Tuple[str, ...] = ()

    def __post_init__(self):
        if not 1 <= len(self.keys) <= 4:
            raise ValueError(f"--keys {','.join(self.keys)}: expected 1 to 4 keys "
                             f"(category, hue, x axis, style), e.g. dataset,estimator,iw")

    @property
    def category(self) -> Optional[str]:
        return self.keys[0] if len(self.keys) >= 3 else None

    @property
    def hue(self) -> str:
        return self.keys[0] if len(self.keys) <= 2 else self.keys[1]

    @property
    def x(self) -> Optional[str]:
        if len(self.keys) == 1:
            return None
        return self.keys[1] if len(self.keys) == 2 else self.keys[2]

    @property
    def style(self) -> Optional[str]:
        return self.keys[3] if len(self.keys) == 4 else None

    @property
    def group_columns(self) -> List[str]:
        return list(self.keys) + list(self.variants)

    @property
    def line_columns(self) -> List[str]:
        return [self.hue] + list(self.variants)


class Palette:
    """Colour and label of each line identity (hue value + variants). Estimators keep
    their fixed colour; variants of one estimator get darker shades of it."""

    def __init__(self, attributes: pd.DataFrame, layout: Layout):
        self.layout = layout
        lines = attributes[layout.line_columns].drop_duplicates()
        keyed = [tuple(row) for row in lines.itertuples(index=False)]
        if layout.hue == "estimator":
            keyed.sort(key=lambda t: (estimator_style(t[0]).rank,) + tuple(sort_key(v) for v in t[1:]))
        else:
            keyed.sort(key=lambda t: tuple(sort_key(v) for v in t))
        self.order: List[tuple] = keyed
        hue_values = list(dict.fromkeys(t[0] for t in keyed))
        cycle = plt.get_cmap("tab10").colors
        self._colors, self._labels, self._markers = {}, {}, {}
        for index, line in enumerate(keyed):
            siblings = [t for t in keyed if t[0] == line[0]]
            self._markers[line] = MARKERS[index % len(MARKERS)]
            if layout.hue == "estimator":
                style = estimator_style(line[0])
                base, label = style.color, style.label
                self._markers[line] = style.marker or self._markers[line]
            else:
                base = cycle[hue_values.index(line[0]) % len(cycle)]
                label = f"{key_label(layout.hue)}={value_text(line[0])}"
            self._colors[line] = variant_color(base, siblings.index(line), len(siblings))
            extras = [f"{key_label(k)}={value_text(v)}" for k, v in zip(layout.variants, line[1:])]
            self._labels[line] = label + (f" ({', '.join(extras)})" if extras else "")

    def color(self, line: tuple):
        return self._colors[line]

    def marker(self, line: tuple) -> str:
        """A marker per line (the estimator's registered one, if any), so that overlapping lines of a
        pivot plot stay visible."""
        return self._markers[line]

    def label(self, line: tuple) -> str:
        return self._labels[line]


def _styles(values: Sequence, table: Sequence) -> Dict:
    """Style per value in sorted order; a single value keeps the default (solid, no marker)."""
    ordered = sorted(set(values), key=sort_key)
    if len(ordered) <= 1:
        return {}
    return {v: table[i % len(table)] for i, v in enumerate(ordered)}


def _seed_band(frame: pd.DataFrame, by: str, interval: bool = False) -> pd.DataFrame:
    """Mean over runs at each value of ``by`` and a band: the 95% bootstrap interval of the mean
    (``interval``; the pivot plot) or mean +- standard deviation (training curves, where a
    bootstrap at every step would cost more than the figure)."""
    grouped = frame.groupby(by)["value"]
    stats = grouped.agg(["mean", "std", "count"])
    if interval:
        bounds = grouped.agg(lambda v: mean_interval(v.to_numpy(dtype=float)))
        stats["low"], stats["high"] = bounds.map(lambda b: b[0]), bounds.map(lambda b: b[1])
    else:
        stats["low"], stats["high"] = stats["mean"] - stats["std"], stats["mean"] + stats["std"]
    stats = stats.reset_index()
    return stats.sort_values(by, key=lambda s: s.map(sort_key) if s.dtype == object else s)


def _draw(ax, x, stats: pd.DataFrame, color, linestyle="-", marker=None, markevery=None):
    mean, low, high = (stats[c].to_numpy(float) for c in ("mean", "low", "high"))
    ax.plot(x, mean, color=color, linestyle=linestyle, marker=marker, markevery=markevery,
            markersize=5, markerfacecolor="none", linewidth=1.4)
    band = np.isfinite(low) & np.isfinite(high)
    if len(mean) == 1 and band.all():  # a single point: the band as an error bar
        ax.errorbar(x, mean, yerr=[mean - low, high - mean], color=color, capsize=3, linewidth=1.0)
    elif band.any():
        ax.fill_between(np.asarray(x)[band], low[band], high[band], color=color, alpha=BAND_ALPHA, linewidth=0)


def _set_y_scale(ax, metric: str, lines: List[np.ndarray], ylims: Dict[str, Tuple[float, float]],
                 robust: bool = True):
    """Log scale for metrics spanning decades; limits from ``--ylims``, else the data range of
    ``lines`` (each line's values in step order). With ``robust`` (training curves), the first
    ``TRANSIENT_SHARE`` of each line's points may fall outside, cut at the Tukey fences (the first
    evaluations of a run would otherwise flatten everything else); the rest are always shown."""
    values = np.concatenate(lines) if lines else np.array([])
    log = uses_log_scale(metric) and values.size > 0 and np.all(values[np.isfinite(values)] > 0)
    limits = ylims.get(metric) or tukey_limits(values, log=log, whisker=1.5 if robust else math.inf)
    if robust and limits is not None and metric not in ylims:
        settled = tukey_limits(np.concatenate([line[math.ceil(TRANSIENT_SHARE * len(line)):] for line in lines]),
                               log=log, whisker=math.inf)
        if settled is not None:
            limits = (min(limits[0], settled[0]), max(limits[1], settled[1]))
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis, span=limits[1] / limits[0] if limits is not None else 1e9)
    if limits is not None:
        ax.set_ylim(*limits)


def _step_axis(ax, log_steps: bool):
    ax.set_xlabel("step")
    if log_steps:
        ax.set_xscale("log")
    else:
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))


def _legend(fig, palette: Palette, lines: Sequence[tuple], style_key: Optional[str] = None,
            style_values: Sequence = (), linestyles: Optional[Dict] = None, markers: Optional[Dict] = None,
            line_markers: bool = False):
    handles = [Line2D([], [], color=palette.color(line), linewidth=2, label=palette.label(line),
                      marker=palette.marker(line) if line_markers else None, markerfacecolor="none")
               for line in lines]
    if style_key is not None and len(set(style_values)) > 1:
        handles.append(Line2D([], [], linestyle="none", label=key_label(style_key)))
        for value in sorted(set(style_values), key=sort_key):
            handles.append(Line2D([], [], color="0.3",
                                  linestyle=(linestyles or {}).get(value, "-"),
                                  marker=(markers or {}).get(value), label=f"  {value_text(value)}"))
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))


def _panels(values: Sequence, rows: int = 1, width: float = 4.2, height: float = 3.0):
    columns = max(len(values), 1)
    fig, axes = plt.subplots(rows, columns, figsize=(width * columns, height * rows), squeeze=False)
    return fig, axes


def category_values(table: pd.DataFrame, layout: Layout) -> list:
    if layout.category is None:
        return [None]
    return sorted(table[layout.category].unique(), key=sort_key)


def in_category(table: pd.DataFrame, layout: Layout, value) -> pd.DataFrame:
    return table if layout.category is None else table[table[layout.category] == value]


def _line_of(frame: pd.DataFrame, layout: Layout) -> pd.Series:
    return pd.Series(list(frame[layout.line_columns].itertuples(index=False, name=None)), index=frame.index)


def _title(layout: Layout, value) -> str:
    return "" if layout.category is None else f"{key_label(layout.category)}={value_text(value)}"


def _markevery(n_points: int):
    return max(n_points // MARKERS_PER_LINE, 1)


def plot_curves(curves: pd.DataFrame, metric: str, layout: Layout, palette: Palette, path: str,
                ylims: Dict = None, log_steps: bool = False) -> List[str]:
    """One figure of ``metric`` against the training step: a panel per category value,
    colour per hue line, line style per x-key value, marker per style-key value."""
    ylims = ylims or {}
    data = curves[curves["metric"] == metric].copy()
    data["_line"] = _line_of(data, layout)
    categories = category_values(data, layout)
    fig, axes = _panels(categories)
    linestyles = _styles(data[layout.x], LINE_STYLES) if layout.x else {}
    markers = _styles(data[layout.style], MARKERS) if layout.style else {}
    for ax, category in zip(axes[0], categories):
        panel = in_category(data, layout, category)
        plotted = []
        split = [layout.x] if layout.x else []
        split += [layout.style] if layout.style else []
        for keys, group in panel.groupby(["_line"] + split, sort=False):
            keys = keys if isinstance(keys, tuple) else (keys,)
            line, rest = keys[0], dict(zip(split, keys[1:]))
            stats = _seed_band(group, "step")
            _draw(ax, stats["step"], stats, palette.color(line),
                  linestyles.get(rest.get(layout.x), "-"), markers.get(rest.get(layout.style)),
                  _markevery(len(stats)))
            plotted.append(stats["mean"].to_numpy())
        ax.set_title(_title(layout, category))
        _step_axis(ax, log_steps)
        ax.set_ylabel(metric_label(metric))
        _set_y_scale(ax, metric, plotted, ylims)
    lines = [line for line in palette.order if line in set(data["_line"])]
    _legend(fig, palette, lines, layout.x, data[layout.x] if layout.x else (), linestyles, markers)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_detailed(curves: pd.DataFrame, metrics: Sequence[str], layout: Layout, palette: Palette, path: str,
                  ylims: Dict = None, log_steps: bool = False) -> List[str]:
    """Grid of curves: rows = metrics, columns = values of the x key (e.g. K); colour per
    hue line, line style per style-key value. ``curves`` holds one category only."""
    ylims = ylims or {}
    data = curves[curves["metric"].isin(metrics)].copy()
    data["_line"] = _line_of(data, layout)
    columns = sorted(data[layout.x].unique(), key=sort_key) if layout.x else [None]
    fig, axes = _panels(columns, rows=len(metrics), width=3.6, height=2.6)
    linestyles = _styles(data[layout.style], LINE_STYLES) if layout.style else {}
    for row, metric in enumerate(metrics):
        plotted = []
        for col, value in enumerate(columns):
            ax = axes[row][col]
            panel = data[data["metric"] == metric]
            if layout.x:
                panel = panel[panel[layout.x] == value]
            split = [layout.style] if layout.style else []
            for keys, group in panel.groupby(["_line"] + split, sort=False):
                keys = keys if isinstance(keys, tuple) else (keys,)
                stats = _seed_band(group, "step")
                _draw(ax, stats["step"], stats, palette.color(keys[0]),
                      linestyles.get(keys[1], "-") if split else "-")
                plotted.append(stats["mean"].to_numpy())
            if row == 0 and layout.x:
                ax.set_title(f"{key_label(layout.x)}={value_text(value)}")
            if col == 0:
                ax.set_ylabel(metric_label(metric))
            _step_axis(ax, log_steps)
            if row < len(metrics) - 1:
                ax.set_xlabel("")
        for ax in axes[row]:
            _set_y_scale(ax, metric, plotted, ylims)
    lines = [line for line in palette.order if line in set(data["_line"])]
    _legend(fig, palette, lines, layout.style, data[layout.style] if layout.style else (), linestyles)
    fig.tight_layout()
    return save_figure(fig, path)


def _numeric(values: pd.Series) -> bool:
    return all(sort_key(v)[0] == 0 for v in values)


def plot_pivot(per_run: pd.DataFrame, pivot_metrics: Sequence[str], layout: Layout, palette: Palette,
               path: str, ylims: Dict = None) -> List[str]:
    """Pivot metrics against the x key (log axis for K, M, gamma, ...): rows = pivot metrics,
    columns = category values, one line per hue line (mean over seeds, band: its 95% bootstrap
    interval). With a
    single key, the hue values are the x axis."""
    ylims = ylims or {}
    data = per_run.copy()
    data["_line"] = _line_of(data, layout)
    x_key = layout.x or layout.hue
    numeric_x = _numeric(data[x_key])
    positions = {v: i for i, v in enumerate(sorted(data[x_key].unique(), key=sort_key))}
    categories = category_values(data, layout)
    fig, axes = _panels(categories, rows=len(pivot_metrics), width=3.8, height=2.8)
    linestyles = _styles(data[layout.style], LINE_STYLES) if layout.style else {}
    for row, metric in enumerate(pivot_metrics):
        for col, category in enumerate(categories):
            ax = axes[row][col]
            panel = in_category(data, layout, category)
            plotted = []
            split = [layout.style] if layout.style else []
            for keys, group in panel.groupby(["_line"] + split, sort=False):
                keys = keys if isinstance(keys, tuple) else (keys,)
                frame = group[[x_key, metric]].rename(columns={metric: "value"})
                stats = _seed_band(frame, x_key, interval=True)
                x = stats[x_key].astype(float) if numeric_x else stats[x_key].map(positions)
                _draw(ax, x, stats, palette.color(keys[0]), linestyles.get(keys[1], "-") if split else "-",
                      marker=palette.marker(keys[0]))
                plotted.append(stats[["mean", "low", "high"]].to_numpy(float).ravel())  # the bands stay in view
            if numeric_x and x_key in LOG_SCALE_KEYS and (data[x_key].astype(float) > 0).all():
                ax.set_xscale("log")
                ticks = sorted(data[x_key].astype(float).unique())
                ax.set_xticks(ticks)
                ax.set_xticklabels([value_text(t) for t in ticks])
                ax.minorticks_off()
            elif not numeric_x:
                ax.set_xticks(list(positions.values()))
                ax.set_xticklabels([value_text(v) for v in positions], rotation=30, ha="right")
            if row == 0:
                ax.set_title(_title(layout, category))
            if col == 0:
                ax.set_ylabel(metric_label(metric.split(":", 1)[1]) + f"\n[{metric.split(':', 1)[0]}]")
            if row == len(pivot_metrics) - 1:
                ax.set_xlabel(key_label(x_key))
            _set_y_scale(ax, metric.split(":", 1)[1], plotted, ylims,
                         robust=False)
    lines = [line for line in palette.order if line in set(data["_line"])]
    _legend(fig, palette, lines, layout.style, data[layout.style] if layout.style else (), linestyles,
            line_markers=True)
    fig.tight_layout()
    return save_figure(fig, path)
