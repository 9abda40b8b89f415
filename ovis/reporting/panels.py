"""The grid of log-log panels against K shared by the studies' figures: Figure 1 (SNR, variance and
magnitude of the gradients, ``asymptotic.py``) and the time and memory of a step
(``efficiency.py``). Rows are groups of measurements (perturbations, models), columns are
quantities, each panel holds one line and marker per estimator in its fixed colour."""
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pandas as pd
from matplotlib.lines import Line2D

from ovis.reporting.style import MARKERS, estimator_style, plt, sort_estimators, value_text

# (axis, quantity column, estimator, the estimator's rows sorted by K, colour): extra drawing per line.
LineHook = Callable[[object, str, str, pd.DataFrame, tuple], None]
# (axis, row index, quantity column, the row's measurements): titles, labels, reference lines.
PanelHook = Callable[[object, int, str, pd.DataFrame], None]


def estimator_markers(estimators: Sequence[str]) -> Dict[str, str]:
    return {e: MARKERS[i % len(MARKERS)] for i, e in enumerate(estimators)}


def estimator_grid(rows: Sequence[Tuple[object, pd.DataFrame]], columns: Sequence[str], estimators: Sequence[str],
                   line_hook: Optional[LineHook] = None, panel_hook: Optional[PanelHook] = None,
                   width: float = 4.0, height: float = 3.2, x: str = "iw"):
    """One row of panels per ``(name, measurements)`` of ``rows`` and one column per quantity of
    ``columns``: each quantity against ``x`` (K) on log-log axes with the row's K values as ticks.
    Returns ``(figure, axes [rows][columns], markers per estimator)``."""
    estimators = sort_estimators(estimators)
    markers = estimator_markers(estimators)
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(width * len(columns), height * len(rows)),
                             squeeze=False)
    for row, (_, frame) in enumerate(rows):
        ticks = sorted(frame[x].unique())
        for col, column in enumerate(columns):
            ax = axes[row][col]
            for estimator in estimators:
                line = frame[frame["estimator"] == estimator].sort_values(x)
                if line.empty:
                    continue
                color = estimator_style(estimator).color
                ax.plot(line[x], line[column], color=color, marker=markers[estimator], markersize=5,
                        markerfacecolor="none", linewidth=1.4)
                if line_hook is not None:
                    line_hook(ax, column, estimator, line, color)
            ax.set_xscale("log")
            ax.set_yscale("log" if (frame[column].dropna() > 0).all() else "linear")  # e.g. a memory growth of 0 MiB
            ax.set_xticks(ticks)
            ax.set_xticklabels([value_text(t) for t in ticks])
            ax.minorticks_off()
            if row == len(rows) - 1:
                ax.set_xlabel("$K$")
            if panel_hook is not None:
                panel_hook(ax, row, column, frame)
    return fig, axes, markers


def estimator_handles(markers: Dict[str, str], suffixes: Optional[Dict[str, str]] = None) -> List[Line2D]:
    """Legend entries: each estimator's colour, marker and display name (plus its suffix)."""
    return [Line2D([], [], color=estimator_style(e).color, marker=marker, markersize=5, markerfacecolor="none",
                   label=estimator_style(e).label + (suffixes or {}).get(e, "")) for e, marker in markers.items()]
