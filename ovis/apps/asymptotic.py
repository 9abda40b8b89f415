"""``asymptotic_variance.py``'s command line: the options of the asymptotic gradient analysis
(``ovis.analysis.asymptotic``, paper Figure 1), run in the run folder's life cycle
(``ovis.run_folder.run_script``): a folder that holds ``data.csv`` is refused without ``--resume``
(skip the measured rows) or ``--rf``; a signal stops at once, keeping the rows written.

Exit codes (``ovis.exit_codes``): 0 success, 1 failed, 2 bad options, 130 aborted.
"""
import argparse
import math
import os
import sys
from typing import Optional, Sequence

import torch

from ovis import exit_codes
from ovis.analysis.asymptotic import AsymptoticRun, DrawFigures, run_study, write_results
from ovis.cli import ArgumentError, ArgumentParser, add_run_folder_options, comma_list, integer_option
from ovis.devices import resolve_device
from ovis.estimators.config import parse_estimator_id
from ovis.identity import run_hash
from ovis.reporting.asymptotic import draw_figures as draw_run_figures
from ovis.run_folder import StopRequests, run_script, run_work

SCRIPT = "asymptotic_variance.py"


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


def prepare_process(args: argparse.Namespace) -> torch.device:
    """The device, determinism and threads of the study."""
    device = resolve_device(args.device)
    if args.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    return device


def main(argv: Optional[Sequence[str]] = None, draw_figures: Optional[DrawFigures] = draw_run_figures) -> int:
    """Run the study; returns the exit code. ``draw_figures`` draws the run's figures (None: none)."""
    args = build_parser().parse_args(argv)
    try:
        validate_args(args)
    except ValueError as error:
        print(f"{SCRIPT}: error: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    run_dir = os.path.join(args.root, args.exp, args.run_id or default_run_id(args))

    def study(device: torch.device, resume: bool, logger) -> int:
        run = AsymptoticRun(run_dir, resume)

        def measure():
            run_study(args, run, device, logger)
            write_results(run, args, logger, draw_figures)
        return run_work(run_dir, measure, logger, StopRequests(logger, at_once=True))

    def results(folder: str) -> str:
        return "measured rows (data.csv)" if os.path.exists(os.path.join(folder, "data.csv")) else ""

    return run_script(SCRIPT, args, run_dir, results, lambda: prepare_process(args), study)
