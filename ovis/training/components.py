"""The components of a ``run.py`` run and the process it trains in: the check that the data set,
model and estimator registries accept the options together before any work (``check_components``,
part of ``validate_args``), the training estimator (``make_estimator``), data, model and estimator
from the options (``build_components``), and the device, determinism, seeds and threads
(``prepare_process``). ``run.py``'s command line (``ovis.apps.train``) and the efficiency
measurements use them.
"""
import argparse
import functools
import os
import random
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from ovis.cli import comma_list
from ovis.devices import resolve_device, set_threads
from ovis.training.arguments import (DEFAULT_IW, ArgumentError, IncompatibleComponents, gradient_filter,
                                     model_hparams, model_name)
from ovis.training.evaluation import evaluation_threads, torch_threads
from ovis.training.reproduction_options import reproduction_constructor_options
from ovis.training.trainer import RunComponents

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

    if args.compile in ("on", True) and estimator.compile_problem:
        return f"--compile with --estimator {args.estimator}: {estimator.compile_problem}; drop --compile"
    try:
        estimator.check_options(RuntimeOptions(args.alpha, args.beta, args.tau, args.freebits))
    except ValueError as error:
        return (f"--estimator {args.estimator} with --alpha {args.alpha} --beta {args.beta} --tau {args.tau} "
                f"--freebits {args.freebits}: {error}")
    tracked = comma_list(args.track_grad_variances)  # parsed and built by check_values already
    tracker = GradientVarianceTracker(tracked, args.mc, args.iw, shape,
                                      estimator_options=functools.partial(reproduction_constructor_options, args))
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
    config.update(reproduction_constructor_options(args, Estimator, config))
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


def configure_determinism(deterministic: bool) -> None:
    """``--deterministic``: deterministic kernels (cuDNN, cuBLAS, scatter/index ops)."""
    if not deterministic:
        torch.backends.cudnn.benchmark = True
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def configure_threads(args: argparse.Namespace, components: RunComponents) -> None:
    """``--threads``: ``ovis.devices.set_threads`` with this run's step size (rows x parameters)."""
    rows = args.bs * args.mc * args.iw
    parameters = sum(p.numel() for p in components.model.parameters())
    set_threads(args.threads, rows * parameters, components.device)


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def build_components(args: argparse.Namespace, device: torch.device) -> RunComponents:
    """Data sets, model, training estimator and the L_K evaluator factory, for options that
    passed ``validate_args`` (names and compatibility are checked there, without data).

    Raises ArgumentError when the data cannot be loaded."""
    from ovis.datasets import get_datasets
    from ovis.estimators.evaluation import BoundEvaluator
    from ovis.models import get_model

    try:
        datasets = get_datasets(args.dataset, data_root=args.data_root, mini=args.mini, seed=args.seed,
                                only_train_set=args.only_train_set)
    except FileNotFoundError as error:
        raise ArgumentError(f"--dataset {args.dataset}: {error}") from None
    except ValueError as error:
        raise ArgumentError(f"--dataset {args.dataset!r}: {error}") from None

    torch.manual_seed(args.seed)  # the initialisation does not depend on what data loading drew
    name = model_name(args)
    try:
        model = get_model(name, datasets.x_shape, x_mean=datasets.train.mean(), **model_hparams(args))
        estimator = make_estimator(args, datasets.x_shape)
        estimator.check_model(model)
    except ValueError as error:  # ArgumentError included
        raise ArgumentError(f"--model {name} on --dataset {args.dataset}: {error}") from None

    def evaluator(iw: int, rows: int, compiler: Optional[Callable] = None):
        bound = BoundEvaluator(iw, chunk_size=rows, compiler=compiler)

        def evaluate(model, x):
            with torch_threads(evaluation_threads(args)):
                return bound(model, x)
        evaluate.bound = bound  # its chunking, for the evaluation's floor (ovis.training.efficiency)
        return evaluate

    return RunComponents(datasets=datasets, model=model, estimator=estimator, evaluator=evaluator, device=device,
                         estimator_id=args.estimator)


def prepare_process(args: argparse.Namespace,
                    build: Callable[[argparse.Namespace, torch.device], RunComponents]) -> RunComponents:
    """The process settings and components of a run (of ``run.py`` and of the efficiency
    measurements, ``ovis.training.efficiency``): device, determinism, seeds, threads (the glibc heap settings
    come from the environment: ``ovis.launch.RUN_ENVIRONMENT``)."""
    device = resolve_device(args.device)
    configure_determinism(args.deterministic)
    seed_everything(args.seed)
    components = build(args, device)
    configure_threads(args, components)
    return components
