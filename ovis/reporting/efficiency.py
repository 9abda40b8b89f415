"""Table and figure of ``measure_efficiency.py``: time per step and memory against K."""
from typing import List

import pandas as pd
from matplotlib.lines import Line2D

from ovis.reporting.style import (MARKERS, estimator_style, plain_log_ticks, plt, save_figure, sort_estimators,
                                  value_text)
from ovis.reporting.tables import markdown_list_table

# Memory of the step itself (peak minus the footprint of the process, model and data before it).
PANELS = (("time_ms", "time per step (ms)"), ("step_memory_mib", "memory of a step (MiB)"))


def plot_efficiency(table: pd.DataFrame, path: str) -> List[str]:
    """Rows = models (and kinds), columns = median step time and the memory growth of a step
    against K on log-log axes, one line and marker per estimator (p10-p90 band of the time)."""
    groups = list(table.groupby(["model", "kind"], sort=False))
    estimators = sort_estimators(table["estimator"])
    markers = {e: MARKERS[i % len(MARKERS)] for i, e in enumerate(estimators)}
    fig, axes = plt.subplots(len(groups), len(PANELS), figsize=(4.2 * len(PANELS), 3.0 * len(groups)),
                             squeeze=False)
    for row, ((model, kind), group) in enumerate(groups):
        ks = sorted(group["iw"].unique())
        for col, (column, label) in enumerate(PANELS):
            ax = axes[row][col]
            for estimator in estimators:
                line = group[group["estimator"] == estimator].sort_values("iw")
                if line.empty:
                    continue
                color = estimator_style(estimator).color
                ax.plot(line["iw"], line[column], color=color, marker=markers[estimator], markersize=5,
                        markerfacecolor="none")
                if column == "time_ms":
                    ax.fill_between(line["iw"], line["time_ms_p10"], line["time_ms_p90"], color=color,
                                    alpha=0.15, linewidth=0)
            ax.set_xscale("log")
            ax.set_yscale("log")
            values = group[column][group[column] > 0]
            plain_log_ticks(ax.yaxis, span=values.max() / values.min() if len(values) else 1.0)
            ax.set_xticks(ks)
            ax.set_xticklabels([value_text(k) for k in ks])
            ax.minorticks_off()
            ax.set_ylabel(label)
            device = group["device_used"].iloc[0]
            ax.set_title(f"{model} ({kind}, {device}, batch {group['batch_size'].iloc[0]})", fontsize=9)
            if row == len(groups) - 1:
                ax.set_xlabel("$K$")
    handles = [Line2D([], [], color=estimator_style(e).color, marker=markers[e], markersize=5, markerfacecolor="none",
                      label=estimator_style(e).label) for e in estimators]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    return save_figure(fig, path)


def markdown_summary(table: pd.DataFrame) -> str:
    """Per model: rows = estimators, columns = K, cells ``<time> ms / +<memory of the step> MiB``."""
    parts = []
    for (model, kind), group in table.groupby(["model", "kind"], sort=False):
        ks = sorted(group["iw"].unique())
        rows = []
        for estimator in sort_estimators(group["estimator"]):
            cells = []
            for k in ks:
                match = group[(group["estimator"] == estimator) & (group["iw"] == k)]
                cells.append("-" if match.empty else
                             f"{match['time_ms'].iloc[0]:.2f} ms / +{match['step_memory_mib'].iloc[0]:.0f} MiB")
            rows.append([estimator] + cells)
        device = group["device_used"].iloc[0]
        parts.append(f"### {model} ({kind}, batch {group['batch_size'].iloc[0]}, {device})\n\n"
                     f"Median time per step / memory growth during the steps (process memory before them: "
                     f"{group['peak_memory_mib'].sub(group['step_memory_mib']).median():.0f} MiB).\n\n"
                     + markdown_list_table(rows, ["estimator"] + [f"K={k}" for k in ks]))
    return "\n".join(parts)
