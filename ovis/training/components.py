"""What a run trains with and the process it trains in: data, model and estimator from the options
(``build_components``), and the device, determinism, seeds and threads (``prepare_process``).
``run.py``'s command line (``ovis.apps.train``) and the efficiency measurements use both.
"""
import argparse
import os
import random
from contextlib import contextmanager
from typing import Callable

import numpy as np
import torch

from ovis.devices import resolve_device, set_threads
from ovis.training.arguments import ArgumentError, make_estimator, model_hparams, model_name
from ovis.training.trainer import RunComponents

# Rows (data points x particles) of one forward pass of the evaluations and analyses: bounds their
# memory at iw = 5000 or mc = 1000. On a CPU, 512 rows are as fast per row as larger chunks.
CHUNK_ROWS = {"cpu": 512, "cuda": 65536}
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, before configure_threads changes it


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


@contextmanager
def torch_threads(count: int):
    """Run the block with ``count`` torch CPU threads, then restore the previous count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def evaluation_threads(args: argparse.Namespace) -> int:
    """Threads of the bound evaluations: ``--threads`` when given, else torch's default (one per
    core, or ``OMP_NUM_THREADS``) even where ``configure_threads`` chose one thread for the small
    training step: an evaluation at K = 5000 has thousands of rows per forward pass."""
    return args.threads if args.threads > 0 else DEFAULT_THREADS


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

    # --sequential_computation: one particle per data point and forward pass (lowest memory)
    rows = min(args.test_bs, args.valid_bs) if args.sequential_computation else CHUNK_ROWS[device.type]

    def evaluator(iw: int):
        bound = BoundEvaluator(iw, chunk_size=rows)

        def evaluate(model, x):
            with torch_threads(evaluation_threads(args)):
                return bound(model, x)
        evaluate.bound = bound  # its chunking, for the evaluation's floor (ovis.training.efficiency)
        return evaluate

    return RunComponents(datasets=datasets, model=model, estimator=estimator, evaluator=evaluator, device=device,
                         estimator_id=args.estimator, chunk_rows=rows)


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
