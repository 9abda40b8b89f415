"""Asymptotic gradient analysis on the Gaussian toy model (paper Figure 1).

The linear Gaussian model of Rainforth et al. (2018, "Tighter variational bounds are not
necessarily better") is set to its optimum and perturbed by i.i.d. N(0, epsilon^2) noise.
There, for each estimator and each K (log-spaced from ``iw_min`` to ``iw_max``), the
statistics of ``mc_samples`` independent gradient estimates on the whole data set are
measured (``ovis.analysis.gradients.gradient_statistics``; parameter ``b`` of the inference
network by default). The paper's finding, with epsilon = 0.01: the SNR of ``ovis-gamma1``
grows like sqrt(K) (log-log slope +0.5), that of ``ovis-gamma0`` more slowly, and that of
``pathwise-iwae`` decays like 1/sqrt(K) (slope -0.5). ``fit_loglog_slope`` measures it.

Outputs in ``<root>/<exp>/<run_id>/``: ``config.json``, ``run.log``, ``data.csv`` (one row per
epsilon, estimator and K: ``grads/*``, ``snr/*`` and the perturbed model's bound
statistics ``loss/*``), ``coordinates.csv`` (mean, variance, SNR of every selected
coordinate), ``grads.csv`` (all gradient samples of the coordinate with the largest mean,
chosen at the first estimator and the largest K), ``slopes.csv``, the figures
``asymptotic-gradients`` and ``asymptotic-gradients-dist`` (PNG + PDF) and ``outcome.txt``.
Rows are written as they are measured; ``--resume`` skips the measured ones. The command line,
``asymptotic_variance.py``, is ``ovis.apps.asymptotic``.
"""
import argparse
import logging
import os
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ovis.cli import comma_list
from ovis.files import atomic_write
from ovis.analysis.gradients import gradient_statistics
from ovis.datasets.gaussian_toy import sample_toy_data
from ovis.estimators.config import parse_estimator_id
from ovis.estimators.evaluation import BoundEvaluator
from ovis.models import get_model

LOSS_KEYS = ("loss/L_k", "loss/elbo", "loss/kl_q_p", "loss/nll", "loss/kl", "loss/ess")
SLOPE_METRICS = ("grads/snr", "grads/variance", "grads/magnitude", "grads/dsnr")
IDENTITY = ("epsilon", "estimator", "iw")


# --- K grid and slopes -------------------------------------------------------------------------
def iw_values(iw_min: int, iw_max: int, iw_steps: int) -> List[int]:
    """K values: integer parts of ``iw_steps`` log-spaced points from ``iw_min`` to ``iw_max``,
    without repeats, largest first (``3, 1000, 5`` -> ``[1000, 234, 54, 12, 3]``; the tolerance
    keeps 234 whatever the last bit numpy's rounding gives)."""
    grid = np.geomspace(iw_min, iw_max, iw_steps) if iw_steps > 1 else np.array([iw_max])
    return sorted({int(k + 1e-9) for k in grid}, reverse=True)


def fit_loglog_slope(iw: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of log(values) against log(K) over the finite positive values
    (``+0.5`` when values ~ sqrt(K)); NaN with fewer than two distinct K."""
    iw, values = np.asarray(iw, dtype=float), np.asarray(values, dtype=float)
    keep = np.isfinite(values) & (values > 0) & (iw > 0)
    if np.unique(iw[keep]).size < 2:
        return float("nan")
    return float(np.polyfit(np.log(iw[keep]), np.log(values[keep]), 1)[0])


def slope_table(data: pd.DataFrame, metrics: Sequence[str] = SLOPE_METRICS) -> pd.DataFrame:
    """Per (epsilon, estimator): the K range and the log-log slope of each metric against K
    (columns ``slope:<metric>``)."""
    rows = []
    for (epsilon, estimator), group in data.groupby(["epsilon", "estimator"], sort=False):
        row = {"epsilon": epsilon, "estimator": estimator, "iw_min": int(group["iw"].min()),
               "iw_max": int(group["iw"].max()), "points": int(group["iw"].nunique())}
        row.update({f"slope:{m}": fit_loglog_slope(group["iw"], group[m]) for m in metrics if m in group})
        rows.append(row)
    return pd.DataFrame(rows)


def format_slopes(slopes: pd.DataFrame, float_format: str = "+.3f") -> str:
    """The slope table as text, slopes with an explicit sign."""
    formatters = {c: (lambda v: format(v, float_format)) for c in slopes.columns if c.startswith("slope:")}
    return slopes.to_string(index=False, formatters=formatters)


# --- measurements ------------------------------------------------------------------------------
def toy_problem(args: argparse.Namespace, device: torch.device):
    """The toy data ``x [npoints, D]`` and the model built with ``--seed``."""
    x = sample_toy_data(args.npoints, args.D).to(device)  # [npoints, D]
    torch.manual_seed(args.seed)
    model = get_model("gaussian-toy", x_shape=(args.D,), x_mean=x.mean(0).cpu()).to(device)
    return model, x


@torch.no_grad()
def bound_statistics(model, x: torch.Tensor, iw: int, chunk_size: int) -> Dict[str, float]:
    """Mean over the data of the plain bound's diagnostics (L_K, ELBO, KL(q||p), ESS, ...)."""
    _, diagnostics, _ = BoundEvaluator(iw, chunk_size=chunk_size)(model, x)
    return {key: float(diagnostics[key].float().mean()) for key in LOSS_KEYS if key in diagnostics}


def gradient_row(estimator_id: str, iw: int, model, x: torch.Tensor, args: argparse.Namespace):
    """Statistics of one estimator at one K: (summary row, per-coordinate table, samples or None)."""
    Estimator, config = parse_estimator_id(estimator_id)
    estimator = Estimator(mc=1, iw=iw, **config).to(x.device)
    estimator.check_model(model)
    torch.manual_seed(args.seed)
    stats = gradient_statistics(estimator, model, x, args.mc_samples, args.key_filter,
                                chunk_size=args.samples_per_batch, alpha=args.alpha)
    coordinates = pd.DataFrame({"coordinate": np.arange(stats.mean.numel()),
                                "mean": stats.mean.cpu().numpy(), "magnitude": stats.mean.abs().cpu().numpy(),
                                "variance": stats.variance.cpu().numpy(), "snr": stats.snr.cpu().numpy()})
    samples = None if stats.samples is None else stats.samples.cpu().numpy()
    return dict(stats.summary), coordinates, samples


class AsymptoticRun:
    """The run folder: tables written as rows arrive, resumable."""

    def __init__(self, run_dir: str, resume: bool):
        self.run_dir = run_dir
        tables = {name: self._read(name) if resume else pd.DataFrame() for name in ("data", "coordinates", "grads")}
        self.data, self.coordinates, self.grads = tables["data"], tables["coordinates"], tables["grads"]

    def _read(self, name: str) -> pd.DataFrame:
        path = os.path.join(self.run_dir, f"{name}.csv")
        return pd.read_csv(path) if os.path.exists(path) else pd.DataFrame()

    def _write(self, name: str, table: pd.DataFrame) -> None:
        atomic_write(os.path.join(self.run_dir, f"{name}.csv"), table.to_csv(index=False))

    def done(self, epsilon: float, estimator: str, iw: int) -> bool:
        if self.data.empty:
            return False
        match = (np.isclose(self.data["epsilon"], epsilon) & (self.data["estimator"] == estimator)
                 & (self.data["iw"] == iw))
        return bool(match.any())

    def tracked_coordinate(self, epsilon: float) -> Optional[int]:
        if self.grads.empty:
            return None
        rows = self.grads[np.isclose(self.grads["epsilon"], epsilon)]
        return None if rows.empty else int(rows["coordinate"].iloc[0])

    def add(self, identity: Dict, row: Dict, coordinates: pd.DataFrame, samples: Optional[np.ndarray],
            tracked: Optional[int]) -> None:
        self.data = pd.concat([self.data, pd.DataFrame([{**identity, **row}])], ignore_index=True)
        self._write("data", self.data)
        self.coordinates = pd.concat([self.coordinates, coordinates.assign(**identity)], ignore_index=True)
        self._write("coordinates", self.coordinates)
        if samples is not None and tracked is not None:
            grads = pd.DataFrame({**identity, "coordinate": tracked, "sample": np.arange(len(samples)),
                                  "grad": samples[:, tracked]})
            self.grads = pd.concat([self.grads, grads], ignore_index=True)
            self._write("grads", self.grads)


def run_study(args: argparse.Namespace, run: AsymptoticRun, device: torch.device, log: logging.Logger) -> pd.DataFrame:
    """Measure every (epsilon, estimator, K) not in ``run`` yet; return the data table."""
    model, x = toy_problem(args, device)
    chunk = args.samples_per_batch
    log.info(f"toy data: {tuple(x.shape)}; bound at initialisation: {bound_statistics(model, x, args.iw_valid, chunk)}")
    estimators, ks = comma_list(args.estimators), iw_values(args.iw_min, args.iw_max, args.iw_steps)
    for index, epsilon in enumerate(float(e) for e in comma_list(args.epsilon)):
        model.set_optimum()
        log.info(f"epsilon={epsilon:g}: bound at the optimum: {bound_statistics(model, x, args.iw_valid, chunk)}")
        model.perturb(epsilon, generator=torch.Generator().manual_seed(args.seed * 1000 + index))
        perturbed = {f"perturbed:{k}": v for k, v in bound_statistics(model, x, args.iw_valid, chunk).items()}
        log.info(f"epsilon={epsilon:g}: bound after the perturbation: {perturbed}")
        tracked = run.tracked_coordinate(epsilon)
        for estimator_id in estimators:
            for iw in ks:
                if run.done(epsilon, estimator_id, iw):
                    continue
                summary, coordinates, samples = gradient_row(estimator_id, iw, model, x, args)
                if tracked is None:  # the first estimator at the largest K chooses the coordinate
                    tracked = int(coordinates["magnitude"].idxmax())
                identity = {"epsilon": epsilon, "estimator": estimator_id, "iw": iw}
                row = {**summary, **perturbed, "seed": args.seed, "alpha": args.alpha,
                       "mc_samples": args.mc_samples, "param": args.key_filter}
                run.add(identity, row, coordinates, samples, tracked)
                log.info(f"eps={epsilon:g} {estimator_id:>20s} K={iw:<5d} snr={summary['grads/snr']:.4g} "
                         f"variance={summary['grads/variance']:.4g} magnitude={summary['grads/magnitude']:.4g} "
                         f"dsnr={summary['grads/dsnr']:.4g}")
    return run.data


def figure_title(args) -> str:
    """What a figure of this run shows (``args``: the options, or the run's ``config.json``)."""
    options = args if isinstance(args, dict) else vars(args)
    return (f"Gaussian toy model (D={options['D']}, {options['npoints']} points), perturbation "
            f"$\\epsilon$={options['epsilon']}: gradients w.r.t. {options['key_filter']}, "
            f"{options['mc_samples']} samples per estimator and $K$")


# Draws a run's figures: (folder, data, coordinates, grads, title, draw_individual) -> paths. The
# command line passes ``ovis.reporting.asymptotic.draw_figures``: reporting sits above analysis.
DrawFigures = Callable[[str, pd.DataFrame, pd.DataFrame, pd.DataFrame, str, bool], List[str]]


def write_results(run: AsymptoticRun, args: argparse.Namespace, log: logging.Logger,
                  draw_figures: Optional[DrawFigures] = None) -> pd.DataFrame:
    """Slopes table and, with ``draw_figures``, the figures; returns the slopes."""
    slopes = slope_table(run.data)
    atomic_write(os.path.join(run.run_dir, "slopes.csv"), slopes.to_csv(index=False))
    log.info("log-log slopes against K:\n" + format_slopes(slopes))
    if draw_figures is not None:
        draw_figures(run.run_dir, run.data, run.coordinates, run.grads, figure_title(args), args.draw_individual)
    return slopes
