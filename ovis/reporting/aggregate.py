"""From runs to numbers: run attributes, per-run aggregates of metrics, seed statistics.

Pivot metrics are written ``<agg>:<split>:<key>`` (``max:test:loss/L_k``); the aggregate
is taken over the run's logged time series exactly as recorded (no smoothing, no
down-sampling), ignoring steps where the value was not finite. Written ``<split>:<key>``
(``train:loss/L_k``, as the original's users sometimes did), a metric takes its default
aggregation (``default_aggregation``): the best value of a bound (max), the lowest of a
divergence or an error (min), the mean of a gradient statistic, else the last value.
"""
import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ovis.estimators.config import EstimatorId, describe_estimator_id
from ovis.identity import applicable_options
from ovis.reporting.runs import Run
from ovis.reporting.uncertainty import mean_interval

AGGREGATIONS = ("min", "max", "mean", "avg", "last")
# Default aggregation of a pivot metric given without one: by key, then by group, else "last".
DEFAULT_AGGREGATION_BY_KEY = {"loss/L_k": "max", "loss/elbo": "max", "loss/nll": "min", "loss/kl": "min",
                              "loss/kl_q_p": "min", "loss/overfitting": "min"}
DEFAULT_AGGREGATION_BY_GROUP = {"grads": "mean", "snr": "mean", "gmm": "min", "gaussian_toy": "min"}
SEED = "seed"


class ReportError(ValueError):
    """A report was asked for something the runs cannot provide (the message says what)."""


@dataclass(frozen=True)
class PivotMetric:
    """``agg`` over the time series of ``metric`` (``split:key``); ``name`` is the spec."""
    agg: str
    metric: str

    @property
    def name(self) -> str:
        return f"{self.agg}:{self.metric}"

    @classmethod
    def parse(cls, spec: str) -> "PivotMetric":
        """``max:test:loss/L_k``; ``test:loss/L_k`` takes ``default_aggregation("loss/L_k")``."""
        agg, _, metric = spec.strip().partition(":")
        if agg not in AGGREGATIONS and metric.count(":") == 0 and agg and "/" in metric:
            return cls(default_aggregation(metric), spec.strip())
        if agg not in AGGREGATIONS or ":" not in metric:
            raise ReportError(f"pivot metric {spec!r}: expected <agg>:<split>:<key> with agg in "
                              f"{', '.join(AGGREGATIONS)} (e.g. max:test:loss/L_k), or <split>:<key> for the "
                              f"metric's default aggregation (max for loss/L_k, min for loss/kl_q_p, mean for "
                              f"grads/*)")
        return cls("mean" if agg == "avg" else agg, metric)


def default_aggregation(key: str) -> str:
    """The aggregation of a pivot metric written ``<split>:<key>`` (see the module docstring)."""
    return DEFAULT_AGGREGATION_BY_KEY.get(key) or DEFAULT_AGGREGATION_BY_GROUP.get(key.split("/", 1)[0], "last")


def parse_ylims(specs: Sequence[str]) -> Dict[str, Tuple[float, float]]:
    """``train:loss/L_k:-94:-88`` -> ``{"train:loss/L_k": (-94.0, -88.0)}``."""
    limits = {}
    for spec in specs:
        parts = spec.strip().rsplit(":", 2)
        try:
            metric, low, high = parts[0], float(parts[1]), float(parts[2])
        except (IndexError, ValueError):
            raise ReportError(f"--ylims entry {spec!r}: expected <split>:<key>:<min>:<max>, "
                              f"e.g. train:loss/L_k:-94:-88") from None
        if ":" not in metric or not low < high:
            raise ReportError(f"--ylims entry {spec!r}: expected <split>:<key>:<min>:<max> with min < max")
        limits[metric] = (low, high)
    return limits


def aggregate_series(values: np.ndarray, agg: str) -> float:
    """One number from a run's time series (ordered by step); NaN when nothing is finite."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan")
    if agg == "last":
        return float(finite[-1])
    return float({"min": np.min, "max": np.max, "mean": np.mean}[agg](finite))


def run_aggregates(curves: pd.DataFrame, pivot_metrics: Sequence[PivotMetric]) -> pd.DataFrame:
    """Per-run table: index ``run_id``, one column per pivot metric (its spec)."""
    columns = {}
    for pivot in pivot_metrics:
        series = curves[curves["metric"] == pivot.metric].sort_values(["run_id", "step"], kind="stable")
        columns[pivot.name] = series.groupby("run_id")["value"].agg(
            lambda v, agg=pivot.agg: aggregate_series(v.to_numpy(dtype=float), agg))
    return pd.DataFrame(columns)


def _scalar(value):
    if isinstance(value, (list, tuple, dict)):
        return str(value)
    return value


def _description(estimator) -> Optional[EstimatorId]:
    try:
        return describe_estimator_id(str(estimator))
    except ValueError:  # an id of another version of the code: kept as it is
        return None


def estimator_key(estimator) -> str:
    """The canonical id that groups runs (``Pathwise`` -> ``pathwise``; ``ovis-S2.0-exclusive``
    stays apart from ``ovis-S2-exclusive``); unknown ids unchanged."""
    description = _description(estimator)
    return str(estimator) if description is None else description.key


def split_estimator_id(estimator: str, taken: Sequence[str] = ()) -> Dict[str, object]:
    """``ovis-gamma1`` -> ``{"estimator": "ovis-gamma", "gamma": 1.0}``; ``ovis-S50-exclusive`` ->
    ``{"estimator": "ovis-S-exclusive", "S": 50}``; ``ovis-S0.5`` -> ``{"estimator": "ovis-S",
    "S_per_K": 0.5}`` (from ``describe_estimator_id``). A parameter whose name is already a run
    option (``beta``) is prefixed ``estimator_``."""
    description = _description(estimator)
    if description is None:
        return {"estimator": str(estimator)}
    return {"estimator": description.family,
            **{("estimator_" + name if name in taken else name): value for name, value in description.parameters}}


def attribute_table(runs: Sequence[Run], parse_estimator_args: bool = False,
                    merge_args: Sequence[str] = ()) -> pd.DataFrame:
    """Run options as a table indexed by ``run_id`` (``ovis.identity.applicable_options``:
    bookkeeping options and options the run does not read left out).

    ``merge_args=("a", "b")`` adds the column ``a-b`` holding ``"<a>-<b>"``.
    """
    rows = {}
    for run in runs:
        row = {k: _scalar(v) for k, v in applicable_options(run.config).items()}  # the settings the run reads
        if "estimator" in row:
            row["estimator"] = estimator_key(row["estimator"])
        if parse_estimator_args and "estimator" in row:
            row.update(split_estimator_id(row["estimator"], taken=set(row) - {"estimator"}))
        rows[run.run_id] = row
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name = "run_id"
    if merge_args:
        missing = [a for a in merge_args if a not in table.columns]
        if len(merge_args) != 2 or missing:
            raise ReportError(f"--merge_args {','.join(merge_args)}: expected two run options "
                              f"(missing: {missing}); available: {sorted(table.columns)}")
        a, b = merge_args
        table[f"{a}-{b}"] = table[a].astype(str) + "-" + table[b].astype(str)
    return table


def constant_columns(table: pd.DataFrame) -> Dict[str, object]:
    """Columns with a single value across all runs (the experiment's global attributes)."""
    constants = {}
    for column in table.columns:
        values = table[column].astype(str).unique()
        if len(values) == 1:
            constants[column] = table[column].iloc[0]
    return constants


def variant_columns(table: pd.DataFrame, keys: Sequence[str]) -> List[str]:
    """Varying options that are not keys or the seed and that separate runs the keys do
    not: the extra attributes that make up a group (e.g. ``warmup`` when an estimator is
    run with and without warm-up). A column implied by the others (``id`` when
    ``warmup`` already tells the runs apart) is left out."""
    constants = constant_columns(table)
    candidates = [c for c in table.columns if c not in keys and c != SEED and c not in constants]
    # Try to drop the least informative columns first.
    candidates.sort(key=lambda c: (c != "id", c))
    kept = list(candidates)
    as_text = table.astype(str)
    for column in candidates:
        others = list(keys) + [c for c in kept if c != column]
        with_column = as_text.groupby(others + [column], dropna=False).ngroups
        without_column = as_text.groupby(others, dropna=False).ngroups if others else 1
        if with_column == without_column:
            kept.remove(column)
    return sorted(kept)


def seed_statistics(per_run: pd.DataFrame, group_columns: Sequence[str],
                    value_columns: Sequence[str]) -> pd.DataFrame:
    """Mean, standard deviation (unbiased, ``ddof=1``; NaN for a single run), number of runs with a
    finite value and the 95% bootstrap interval of the mean (``ovis.reporting.uncertainty``), per
    group: columns ``(<value>, mean|std|n|ci_low|ci_high)``."""
    grouped = per_run.groupby(list(group_columns), dropna=False, sort=False)
    stats = {}
    for column in value_columns:
        stats[(column, "mean")] = grouped[column].mean()
        stats[(column, "std")] = grouped[column].std(ddof=1)
        stats[(column, "n")] = grouped[column].count()
        intervals = grouped[column].agg(lambda v: mean_interval(v.to_numpy(dtype=float)))
        stats[(column, "ci_low")] = intervals.map(lambda pair: pair[0])
        stats[(column, "ci_high")] = intervals.map(lambda pair: pair[1])
    table = pd.DataFrame(stats)
    table.columns = pd.MultiIndex.from_tuples(table.columns)
    return table


def smooth_curves(curves: pd.DataFrame, ema: float) -> pd.DataFrame:
    """Exponential moving average per (run, metric): ``y_t = ema * y_{t-1} + (1 - ema) x_t``."""
    if not 0 <= ema < 1:
        raise ReportError(f"--ema {ema}: expected a smoothing factor in [0, 1)")
    if ema == 0 or curves.empty:
        return curves
    curves = curves.sort_values(["run_id", "metric", "step"], kind="stable").copy()
    curves["value"] = curves.groupby(["run_id", "metric"])["value"].transform(
        lambda v: v.ewm(alpha=1 - ema, adjust=False, ignore_na=True).mean())
    return curves


def downsample_curves(curves: pd.DataFrame, max_points: int) -> pd.DataFrame:
    """At most ``max_points`` points per (run, metric): the step range is cut into equal
    bins and each bin is replaced by the mean step and mean value of its points."""
    if max_points < 0:
        raise ReportError(f"--downsample {max_points}: expected 0 (off) or a positive number of points")
    if max_points == 0 or curves.empty:
        return curves
    parts = []
    for (run_id, metric), curve in curves.groupby(["run_id", "metric"], sort=False):
        if curve["step"].nunique() <= max_points:
            parts.append(curve)
            continue
        edges = np.linspace(curve["step"].min(), curve["step"].max(), max_points + 1)
        bins = np.clip(np.searchsorted(edges, curve["step"].to_numpy(), side="right") - 1, 0, max_points - 1)
        binned = curve.groupby(bins).agg(step=("step", "mean"), value=("value", "mean"))
        binned.insert(0, "run_id", run_id)
        binned.insert(2, "metric", metric)
        parts.append(binned[["run_id", "step", "metric", "value"]])
    return pd.concat(parts, ignore_index=True)


# Values beyond the Tukey fences are left off an axis only when they are at most this share of
# the points (a few transients of a long run); beyond, the axis shows everything.
MAX_CLIPPED_SHARE = 0.05


def tukey_limits(values: np.ndarray, log: bool = False, whisker: float = 1.5) -> Optional[Tuple[float, float]]:
    """Axis limits that keep the bulk of ``values`` readable: the Tukey fences
    ``[q1 - whisker IQR, q3 + whisker IQR]`` clipped to the data range (computed on log10
    values for a log axis; ``whisker=inf``: the data range), with a 5% margin. The data range
    when more than ``MAX_CLIPPED_SHARE`` of the values lie beyond the fences (a short curve's
    first point is data, not an outlier). ``None`` when there is nothing finite to show."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values) & ((values > 0) if log else True)]
    if values.size == 0:
        return None
    v = np.log10(values) if log else values
    low, high = v.min(), v.max()
    if math.isfinite(whisker):
        q1, q3 = np.percentile(v, [25, 75])
        fences = (q1 - whisker * (q3 - q1), q3 + whisker * (q3 - q1))
        if np.mean((v < fences[0]) | (v > fences[1])) <= MAX_CLIPPED_SHARE:
            low, high = max(fences[0], low), min(fences[1], high)
    pad = 0.05 * (high - low) if high > low else max(abs(high) * 0.05, 1e-3)
    low, high = low - pad, high + pad
    return (10 ** low, 10 ** high) if log else (low, high)
