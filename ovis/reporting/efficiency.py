"""Table and figure of ``measure_efficiency.py``: time per step and memory against K."""
from typing import List

import pandas as pd

from ovis.reporting.panels import estimator_grid, estimator_handles
from ovis.reporting.style import plain_log_ticks, save_figure, sort_estimators
from ovis.reporting.tables import markdown_list_table

# Memory of the step itself (peak minus the footprint of the process, model and data before it).
PANELS = (("time_ms", "time per step (ms)"), ("step_memory_mib", "memory of a step (MiB)"))


def plot_efficiency(table: pd.DataFrame, path: str) -> List[str]:
    """Rows = models (and kinds), columns = median step time and the memory growth of a step
    against K on log-log axes, one line and marker per estimator (p10-p90 band of the time)."""
    rows = list(table.groupby(["model", "kind"], sort=False))

    def time_band(ax, column, estimator, line, color):
        if column == "time_ms":
            ax.fill_between(line["iw"], line["time_ms_p10"], line["time_ms_p90"], color=color, alpha=0.15,
                            linewidth=0)

    def decorate(ax, row, column, group):
        values = group[column][group[column] > 0]
        if ax.get_yscale() == "log":  # linear where some value is 0 (a step that grew no memory)
            plain_log_ticks(ax.yaxis, span=values.max() / values.min())
        ax.set_ylabel(dict(PANELS)[column])
        (model, kind), device = rows[row][0], group["device_used"].iloc[0]
        ax.set_title(f"{model} ({kind}, {device}, batch {group['batch_size'].iloc[0]})", fontsize=9)

    fig, _, markers = estimator_grid(rows, [column for column, _ in PANELS], table["estimator"].unique(), time_band,
                                     decorate, width=4.2, height=3.0)
    fig.legend(handles=estimator_handles(markers), loc="center left", bbox_to_anchor=(1.0, 0.5))
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
