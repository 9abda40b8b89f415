"""Uncertainty over seeds with ``scipy.stats.bootstrap``: confidence intervals of a group's mean
and the probability of improvement between two estimators (Agarwal et al., "Deep reinforcement
learning at the edge of the statistical precipice", NeurIPS 2021).

Interval of a mean: the percentile bootstrap over the group's seeds (BCa needs a jackknife that
three seeds cannot support). Probability of improvement of A over B in one stratum (one value of
every other report key: model, data set, K, ...): ``P(X_A > X_B) + P(X_A = X_B) / 2`` over the
pairs of their seeds' values (the Mann-Whitney statistic divided by the number of pairs), averaged
over the strata where both ran; its interval comes from the stratified bootstrap: every stratum's
runs of A and of B are resampled on their own (``scipy.stats.bootstrap`` with independent
samples). Resampling is seeded: a report is the same at every build.
"""
import math
from typing import List, Sequence, Tuple

import numpy as np
import pandas as pd
from scipy import stats

CONFIDENCE = 0.95
RESAMPLES = 2000
SEED = 0


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Tuple[float, float]:
    """Bootstrap interval of the mean of the finite ``values``; NaN for fewer than two."""
    finite = np.asarray(values, dtype=float)
    finite = finite[np.isfinite(finite)]
    if finite.size < 2:
        return math.nan, math.nan
    if np.ptp(finite) == 0:  # every resample has the same mean
        return float(finite[0]), float(finite[0])
    result = stats.bootstrap((finite,), np.mean, confidence_level=confidence, n_resamples=RESAMPLES,
                             method="percentile", random_state=np.random.default_rng(SEED))
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _improvement(a: np.ndarray, b: np.ndarray) -> float:
    """``P(A > B) + P(A = B) / 2`` over the pairs of values of one stratum."""
    greater = (a[:, None] > b[None, :]).mean()
    return float(greater + 0.5 * (a[:, None] == b[None, :]).mean())


def probability_of_improvement(strata: List[Tuple[np.ndarray, np.ndarray]],
                               confidence: float = CONFIDENCE) -> Tuple[float, float, float]:
    """``(probability, low, high)`` of A improving on B, from ``[(values of A, values of B)]`` per
    stratum (higher is better); the interval is NaN when no stratum has two runs on a side.
    A side with one run stays as it is in every resample."""
    samples = [np.asarray(values, dtype=float) for pair in strata for values in pair]
    varying = [i for i, s in enumerate(samples) if len(s) >= 2]  # one run resamples to itself

    def statistic(*resampled):
        current = list(samples)
        for i, values in zip(varying, resampled):
            current[i] = values
        return np.mean([_improvement(current[i], current[i + 1]) for i in range(0, len(current), 2)])

    estimate = float(statistic(*(samples[i] for i in varying)))
    if not varying:
        return estimate, math.nan, math.nan
    result = stats.bootstrap([samples[i] for i in varying], statistic, confidence_level=confidence,
                             n_resamples=RESAMPLES, method="percentile", vectorized=False,
                             random_state=np.random.default_rng(SEED))
    return estimate, float(result.confidence_interval.low), float(result.confidence_interval.high)


def improvement_table(per_run: pd.DataFrame, metric: str, compare: str, strata: Sequence[str],
                      higher_is_better: bool = True) -> pd.DataFrame:
    """Probability of improvement between every pair of values of ``compare`` (in order of first
    appearance) on ``metric``, over the strata given by the columns ``strata``: columns ``A``,
    ``B``, ``probability``, ``low``, ``high``, ``strata`` (how many were shared)."""
    sign = 1.0 if higher_is_better else -1.0
    frame = per_run[[compare, *strata, metric]].dropna(subset=[metric])
    names = list(dict.fromkeys(frame[compare]))
    groups = {key: part for key, part in frame.groupby(list(strata), dropna=False, sort=False)} if strata \
        else {(): frame}
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            shared = []
            for part in groups.values():
                values_a = sign * part.loc[part[compare] == a, metric].to_numpy(dtype=float)
                values_b = sign * part.loc[part[compare] == b, metric].to_numpy(dtype=float)
                if values_a.size and values_b.size:
                    shared.append((values_a, values_b))
            if shared:
                rows.append((a, b, *probability_of_improvement(shared), len(shared)))
    return pd.DataFrame(rows, columns=["A", "B", "probability", "low", "high", "strata"])
