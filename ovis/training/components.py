"""The components of a ``run.py`` run, built from its options: the training estimator
(``make_estimator``), and the check that the data set, model and estimator registries accept the
options together before any work (``check_components``, part of ``validate_args``).
"""
import argparse
import functools
from typing import Dict, Optional, Sequence, Tuple

from ovis.cli import comma_list
from ovis.training.arguments import (DEFAULT_IW, ArgumentError, IncompatibleComponents, gradient_filter,
                                     model_hparams, model_name)

BASELINE_HDIM = 64  # the original's --hdim default, the width of reinforce-baseline's network
# Data shape of the placeholder model ``validate_args`` builds (registries only, no data): the
# models with their own data set need theirs, the image models take any image shape.
PROBE_SHAPES = {"gmm": (1,), "gaussian-toy": (20,)}
PROBE_IMAGE_SHAPE = (1, 4, 4)


def check_components(args: argparse.Namespace) -> None:
    """The data set, model and estimator registries accept the options together: the model is
    built on a placeholder data shape (``PROBE_SHAPES``; on a forked RNG, no data loaded), the
    estimator checks it, and ``--grad_key`` must match some of its parameters. Memoised on the
    options involved, so checking a grid builds each model and estimator once."""
    options = dict(model_hparams(args), dataset=args.dataset, model=args.model, estimator=args.estimator,
                   mc=args.mc, iw=args.iw, b_nlayers=args.b_nlayers, grad_key=args.grad_key,
                   grad_samples=args.grad_samples, compile=getattr(args, "compile", False), alpha=args.alpha,
                   beta=args.beta, tau=args.tau, freebits=args.freebits, track_grad_variances=args.track_grad_variances)
    problem = _component_problem(tuple(sorted(options.items())))
    if problem:
        error_class, message = problem
        raise error_class(message)


@functools.lru_cache(maxsize=256)
def _component_problem(options: Tuple) -> Optional[Tuple[type, str]]:
    """``check_components`` on the options ``(name, value)`` it involves: the error class and
    message, or None."""
    import torch

    from ovis.analysis.gradients import select_parameters
    from ovis.datasets import DATASET_NAMES
    from ovis.models import MODEL_NAMES, get_model

    args = argparse.Namespace(**dict(options))
    if args.dataset not in DATASET_NAMES:
        return ArgumentError, f"--dataset {args.dataset!r}: unknown data set; one of {', '.join(DATASET_NAMES)}"
    name = model_name(args)
    if name not in MODEL_NAMES:
        return ArgumentError, f"--model {name!r} is not one of {', '.join(MODEL_NAMES)}"
    shape = PROBE_SHAPES.get(name, PROBE_IMAGE_SHAPE)
    try:
        with torch.random.fork_rng(devices=[]):  # building modules draws: the caller's stream stays as it was
            try:
                model = get_model(name, shape, x_mean=torch.full(shape, 0.5), **model_hparams(args))
            except ValueError as error:
                return ArgumentError, f"--model {name}: {error}"
            estimator = make_estimator(args, shape)
            estimator.check_model(model)
            problem = _estimator_problem(args, estimator, model, name, shape)
    except ArgumentError as error:
        return ArgumentError, str(error)
    except ValueError as error:
        return IncompatibleComponents, f"--estimator {args.estimator} with --model {name}: {error}"
    if problem:
        return IncompatibleComponents, problem
    if args.grad_samples > 0:
        try:
            select_parameters(model, gradient_filter(args, model))
        except ValueError as error:
            return ArgumentError, f"--grad_key: {error} (or --grad_samples 0 to skip the gradient analysis)"
    return None


def _estimator_problem(args: argparse.Namespace, estimator, model, name: str, shape) -> Optional[str]:
    """Why the training estimator refuses ``--compile`` or the runtime options, or why a tracked
    estimator refuses the model; None when nothing does."""
    from ovis.analysis.grad_variance import GradientVarianceTracker
    from ovis.estimators.particles import RuntimeOptions

    if args.compile and estimator.compile_problem:
        return f"--compile with --estimator {args.estimator}: {estimator.compile_problem}; drop --compile"
    try:
        estimator.check_options(RuntimeOptions(args.alpha, args.beta, args.tau, args.freebits))
    except ValueError as error:
        return (f"--estimator {args.estimator} with --alpha {args.alpha} --beta {args.beta} --tau {args.tau} "
                f"--freebits {args.freebits}: {error}")
    tracked = comma_list(args.track_grad_variances)  # parsed and built by check_values already
    tracker = GradientVarianceTracker(tracked, args.mc, args.iw, shape)
    for estimator_id in tracked:
        try:
            tracker.estimator(estimator_id, model)
        except ValueError as error:
            return (f"--track_grad_variances {estimator_id} with --model {name}: {error}; track estimators "
                    f"that the model accepts")
    return None


def make_estimator(args: argparse.Namespace, x_shape: Sequence[int]):
    """The training estimator of the options (``reinforce-baseline``'s network: ``--b_nlayers``
    blocks of width ``--hdim``). Raises ArgumentError naming the options to change."""
    from ovis.estimators.config import parse_estimator_id

    try:
        Estimator, config = parse_estimator_id(args.estimator)
    except ValueError as error:
        raise ArgumentError(f"--estimator {args.estimator!r}: {error}") from None
    baseline = {"baseline_hdim": args.hdim or BASELINE_HDIM, "baseline_nlayers": args.b_nlayers}
    config.update({key: value for key, value in baseline.items() if key in Estimator.baseline_options})
    if getattr(args, "rebar_baseline_hdim", 0) and Estimator.input_baseline_option:  # checked by check_values
        config[Estimator.input_baseline_option] = args.rebar_baseline_hdim
    try:
        return Estimator(mc=args.mc, iw=args.iw, x_shape=tuple(x_shape), **config)
    except ValueError as error:
        message = f"--estimator {args.estimator} with --mc {args.mc} --iw {args.iw}: {error}"
    working = [iw for iw in (2, DEFAULT_IW) if iw > args.iw and _constructs(Estimator, config, args.mc, iw, x_shape)]
    raise ArgumentError(message + (f"; --iw {working[0]} works" if working else ""))


def _constructs(Estimator, config: Dict, mc: int, iw: int, x_shape) -> bool:
    try:
        Estimator(mc=mc, iw=iw, x_shape=tuple(x_shape), **config)
    except ValueError:
        return False
    return True
