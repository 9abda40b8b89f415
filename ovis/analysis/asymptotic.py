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
Rows are written as they are measured; ``--resume`` skips the measured ones.
"""
import argparse
import logging
import math
import os
import shutil
import signal
import sys
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import pandas as pd
import torch

from ovis import exit_codes, records
from ovis.cli import ArgumentParser, add_run_folder_options, comma_list, integer_option
from ovis.files import atomic_write
from ovis.analysis.gradients import gradient_statistics
from ovis.datasets.gaussian_toy import sample_toy_data
from ovis.devices import resolve_device
from ovis.estimators.config import parse_estimator_id
from ovis.estimators.evaluation import BoundEvaluator
from ovis.identity import run_hash
from ovis.models import get_model

LOSS_KEYS = ("loss/L_k", "loss/elbo", "loss/kl_q_p", "loss/nll", "loss/kl", "loss/ess")
SLOPE_METRICS = ("grads/snr", "grads/variance", "grads/magnitude", "grads/dsnr")
IDENTITY = ("epsilon", "estimator", "iw")


class ArgumentError(ValueError):
    """Bad options: the script exits with code 2 before doing any work."""


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


# --- options -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="asymptotic_variance.py",
        description="Variance and SNR of gradient estimators against K on the Gaussian toy model "
                    "near its optimum (paper Figure 1).")
    base = parser.add_argument_group("run")
    add_run_folder_options(base, "asymptotic-variance", "data folder (unused: the toy data are generated)")
    base.add_argument("--seed", type=int, default=1, help="seed of the model, perturbation and particles")
    base.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    base.add_argument("--threads", type=integer_option, default=0, help="CPU threads of PyTorch (0: its default)")
    base.add_argument("--silent", action="store_true", help="log to run.log only")
    base.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels")
    study = parser.add_argument_group("study")
    study.add_argument("--estimators", "--estimator", dest="estimators", default="ovis-gamma0,pathwise-iwae",
                       help="comma-separated estimator ids")
    study.add_argument("--iw_min", type=integer_option, default=5, help="smallest K")
    study.add_argument("--iw_max", type=integer_option, default=100, help="largest K")
    study.add_argument("--iw_steps", type=integer_option, default=3, help="number of log-spaced K values")
    study.add_argument("--epsilon", default="0.01", help="comma-separated perturbation scales")
    study.add_argument("--alpha", type=float, default=0.0, help="Renyi alpha of the estimators")
    study.add_argument("--iw_valid", type=integer_option, default=1000, help="K of the bound reported at the perturbed point")
    study.add_argument("--key_filter", default="b",
                       help="parameters analysed: comma-separated name substrings (A, b: inference; mu: generative)")
    study.add_argument("--mc_samples", type=integer_option, default=300, help="gradient samples per estimator and K")
    study.add_argument("--samples_per_batch", type=integer_option, default=80000,
                       help="at most this many rows (points x particles x samples) per forward pass")
    study.add_argument("--npoints", type=integer_option, default=1024, help="data points of the toy data set")
    study.add_argument("--D", type=integer_option, default=20, help="dimension of the toy model")
    study.add_argument("--draw_individual", action="store_true", help="also draw every coordinate in the figure")
    return parser


def validate_args(args: argparse.Namespace) -> None:
    """Raise ArgumentError naming the first bad option."""
    def check(condition: bool, message: str):
        if not condition:
            raise ArgumentError(message)

    check(1 <= args.iw_min <= args.iw_max, f"--iw_min {args.iw_min} --iw_max {args.iw_max}: need 1 <= iw_min <= iw_max")
    check(args.iw_steps >= 1, f"--iw_steps {args.iw_steps}: need at least 1")
    check(args.mc_samples >= 2, f"--mc_samples {args.mc_samples}: need at least 2 samples to estimate a variance")
    check(args.samples_per_batch >= 1, f"--samples_per_batch {args.samples_per_batch}: need at least 1")
    check(args.npoints >= 1 and args.D >= 1, f"--npoints {args.npoints} --D {args.D}: need positive sizes")
    check(args.iw_valid >= 1, f"--iw_valid {args.iw_valid}: need at least 1")
    check(0 <= args.alpha < 1, f"--alpha {args.alpha}: need 0 <= alpha < 1")
    try:
        epsilons = [float(e) for e in comma_list(args.epsilon)]
    except ValueError:
        raise ArgumentError(f"--epsilon {args.epsilon!r}: expected comma-separated numbers, e.g. 0.01,0.1") from None
    check(bool(epsilons) and all(e >= 0 and math.isfinite(e) for e in epsilons),
          f"--epsilon {args.epsilon!r}: expected comma-separated non-negative numbers")
    estimators = comma_list(args.estimators)
    check(bool(estimators), "--estimators: give at least one estimator id, e.g. ovis-gamma1,pathwise-iwae")
    for estimator in estimators:
        try:
            parse_estimator_id(estimator)
        except ValueError as error:
            raise ArgumentError(f"--estimators: {estimator!r} is not a valid estimator id: {error}") from None
    check(bool(comma_list(args.key_filter)), "--key_filter: name at least one parameter (A, b or mu)")


def default_run_id(args: argparse.Namespace) -> str:
    """``asymptotic-<estimators>-iw<min>-<max>-<steps>-seed<s>-eps<eps>-alpha<a>-<hash>``."""
    estimators = "+".join(comma_list(args.estimators))
    epsilon = "+".join(comma_list(args.epsilon))
    return (f"asymptotic-{estimators}-iw{args.iw_min}-{args.iw_max}-{args.iw_steps}-seed{args.seed}"
            f"-eps{epsilon}-alpha{args.alpha:g}-{run_hash(args)[:12]}")


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
# script passes ``ovis.reporting.asymptotic.draw_figures``: reporting sits above analysis.
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


# --- script ------------------------------------------------------------------------------------
class _Aborted(Exception):
    pass


def _raise_aborted(signum, frame):
    raise _Aborted(f"signal {signum}")


def _logger(run_dir: str, silent: bool) -> logging.Logger:
    log = logging.getLogger(f"ovis.asymptotic.{run_dir}")
    log.setLevel(logging.INFO)
    log.propagate = False
    handlers = [logging.FileHandler(os.path.join(run_dir, "run.log"))] + ([] if silent else [logging.StreamHandler()])
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        log.addHandler(handler)
    return log


def main(argv: Optional[Sequence[str]] = None, draw_figures: Optional[DrawFigures] = None) -> int:
    """Run the study; returns the exit code (``ovis.exit_codes``: 0 success, 1 failed, 2 bad
    options, 130 aborted). ``draw_figures`` draws the run's figures (``asymptotic_variance.py``
    passes ``ovis.reporting.asymptotic.draw_figures``)."""
    args = build_parser().parse_args(argv)
    try:
        validate_args(args)
        device = resolve_device(args.device)
    except ValueError as error:
        print(f"asymptotic_variance.py: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    run_dir = os.path.join(args.root, args.exp, args.run_id or default_run_id(args))
    if os.path.exists(os.path.join(run_dir, "data.csv")) and not (args.resume or args.rf):
        print(f"asymptotic_variance.py: {run_dir} already holds results; pass --resume to continue or --rf to "
              f"start over", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    if args.rf and os.path.isdir(run_dir):
        shutil.rmtree(run_dir)
    os.makedirs(run_dir, exist_ok=True)
    records.clear_outcome(run_dir)
    records.write_config(run_dir, {**vars(args), "hash": run_hash(args), "script": "asymptotic_variance.py"})
    log = _logger(run_dir, args.silent)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    previous = {sig: signal.signal(sig, _raise_aborted) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        run = AsymptoticRun(run_dir, args.resume)
        run_study(args, run, device, log)
        write_results(run, args, log, draw_figures)
        records.write_outcome(run_dir, records.SUCCESS)
        return exit_codes.SUCCESS
    except _Aborted as reason:
        records.write_outcome(run_dir, records.ABORTED, str(reason))
        log.info(f"aborted ({reason}); measured rows are kept, --resume continues")
        return exit_codes.ABORTED
    except Exception as error:  # the marker says why; the traceback goes to run.log
        import traceback

        records.write_outcome(run_dir, records.FAILED, f"{type(error).__name__}: {error}\n{traceback.format_exc()}")
        log.exception("failed")
        return exit_codes.FAILED
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for handler in list(log.handlers):
            handler.close()
            log.removeHandler(handler)
