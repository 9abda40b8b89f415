"""Writing the pivot table as CSV (numbers), Markdown and LaTeX (``mean ± std [low, high]``).

The table has one row per group of runs (the report keys plus the variant attributes)
and, per pivot metric, the mean, standard deviation, count and 95% bootstrap interval of the
mean over seeds (``[low, high]``, from two runs on). In the text
formats the best mean of a ``max:`` (``min:``) metric within a block of comparable rows
(same category and x-key value) is set in bold.
"""
import math
from typing import Callable, Dict, List, Optional, Sequence

import pandas as pd

from ovis.reporting.style import estimator_label

STATISTICS = ("mean", "std", "n", "ci_low", "ci_high")  # the columns of seed_statistics, per metric


def format_number(value: float, float_format: str = "auto", like: Optional[float] = None) -> str:
    """``auto``: two decimals from 1 on (log-likelihoods), 3 significant digits below; a
    spread is written in the format of its mean (``like``): ``-94.19 ± 0.30``."""
    if value is None or not math.isfinite(value):
        return "-"
    if float_format == "auto":
        reference = value if like is None or not math.isfinite(like) else like
        if abs(reference) >= 1 and (like is None or abs(value) >= 0.005 or value == 0):
            return f"{value:.2f}"
        return f"{value:.3g}" if like is None else f"{value:.2g}"
    return format(value, float_format)


def flat_pivot(stats: pd.DataFrame) -> pd.DataFrame:
    """Numbers for the CSV: group columns, then ``<metric> mean|std|n``."""
    flat = stats.copy()
    flat.columns = [f"{metric} {stat}" for metric, stat in stats.columns]
    return flat.reset_index()


def _best_rows(stats: pd.DataFrame, metric: str, block_columns: Sequence[str]) -> set:
    agg = metric.split(":", 1)[0]
    if agg not in ("max", "min"):
        return set()
    means = stats[(metric, "mean")]
    frame = means.reset_index(name="_mean")
    if frame["_mean"].notna().sum() == 0:
        return set()
    blocks = frame.groupby(list(block_columns), dropna=False) if block_columns else [(None, frame)]
    best = set()
    for _, block in blocks:
        block = block.dropna(subset=["_mean"])
        if len(block) > 1:
            best.add(block["_mean"].idxmax() if agg == "max" else block["_mean"].idxmin())
    return best


def _cells(stats: pd.DataFrame, block_columns: Sequence[str], float_format: str,
           bold: Callable[[str], str], plus_minus: str) -> Dict[str, List[str]]:
    runs = stats.xs("n", axis=1, level=1).max(axis=1).to_numpy()
    columns = {}
    for metric in dict.fromkeys(stats.columns.get_level_values(0)):
        best = _best_rows(stats, metric, block_columns)
        cells = []
        for i, (mean, std, n, low, high) in enumerate(zip(*(stats[(metric, stat)] for stat in STATISTICS))):
            text = format_number(mean, float_format)
            if math.isfinite(std):
                text += f" {plus_minus} {format_number(std, float_format, like=mean)}"
            if math.isfinite(low):
                low, high = (format_number(v, float_format, like=mean) for v in (low, high))
                text += f" [{low}, {high}]"
            if n < runs[i]:
                text += f" (n={n})"
            cells.append(bold(text) if i in best else text)
        columns[metric] = cells
    columns["runs"] = [str(int(n)) for n in runs]
    return columns


def _index_columns(stats: pd.DataFrame, label: Optional[Callable[[str, object], str]]) -> Dict[str, List[str]]:
    index = stats.index.to_frame(index=False)
    return {name: [label(name, v) if label else str(v) for v in index[name]] for name in index.columns}


def to_markdown(stats: pd.DataFrame, block_columns: Sequence[str] = (), float_format: str = "auto") -> str:
    columns = {**_index_columns(stats, None),
               **_cells(stats, block_columns, float_format, lambda t: f"**{t}**", "±")}
    header = list(columns)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < stats.index.nlevels else "---:" for i in range(len(header))) + "|"]
    for row in zip(*columns.values()):
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\^{}"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(c, c) for c in str(text))


def _latex_label(name: str, value) -> str:
    # Estimator labels are mathtext, which is valid LaTeX as is.
    return estimator_label(value) if name == "estimator" else latex_escape(value)


def to_latex(stats: pd.DataFrame, block_columns: Sequence[str] = (), float_format: str = "auto",
             caption: str = "") -> str:
    """A ``booktabs`` table (needs ``\\usepackage{booktabs}``)."""
    columns = {**_index_columns(stats, _latex_label),
               **_cells(stats, block_columns, float_format, lambda t: rf"\textbf{{{t}}}", r"$\pm$")}
    header = [latex_escape(c) for c in columns]
    align = "l" * stats.index.nlevels + "r" * (len(header) - stats.index.nlevels)
    lines = [r"\begin{table}[t]", r"\centering", rf"\begin{{tabular}}{{{align}}}", r"\toprule",
             " & ".join(header) + r" \\", r"\midrule"]
    lines += [" & ".join(row) + r" \\" for row in zip(*columns.values())]
    lines += [r"\bottomrule", r"\end{tabular}"]
    if caption:
        lines.append(rf"\caption{{{latex_escape(caption)}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def markdown_list_table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    """A small Markdown table from already formatted cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def improvement_markdown(tables_by_metric: Dict[str, pd.DataFrame], label: Callable[[object], str] = str) -> str:
    """The probability of improvement of A over B per pivot metric (``uncertainty.improvement_table``):
    ``0.83 [0.50, 1.00]``, higher when A is better (larger for ``max:``, smaller for ``min:``)."""
    rows = []
    for metric, table in tables_by_metric.items():
        for a, b, probability, low, high, strata in table.itertuples(index=False):
            interval = f" [{low:.2f}, {high:.2f}]" if math.isfinite(low) else ""
            rows.append((metric, label(a), label(b), f"{probability:.2f}{interval}", str(strata)))
    if not rows:
        return ""
    return markdown_list_table(rows, ["metric", "A", "B", "P(A better than B) [95% interval]", "strata"])
