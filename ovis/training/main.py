"""``run.py``: parse and check the options, build data, model and estimator, prepare the run
folder and hand over to the ``Trainer``.

Exit codes (DESIGN 4): 0 success; 1 failed (message in ``outcome.txt``); 2 bad arguments,
refused before the run folder is touched; 130 aborted by SIGINT / SIGTERM.
"""
import argparse
import os
import random
import shutil
import sys
import traceback
from contextlib import contextmanager
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ovis import exit_codes
from ovis.devices import resolve_device, set_threads
from ovis.records import FAILED, clear_outcome, read_config, write_config, write_outcome
from ovis.training import checkpoint as checkpoints
from ovis.identity import changed_options, run_hash
from ovis.training.arguments import ArgumentError, default_run_id, make_estimator, model_hparams, model_name, parse_args
from ovis.training.recorder import close_logger, run_logger
from ovis.training.trainer import RunComponents, Trainer

# Rows (data points x particles) of one forward pass of the evaluations and analyses: bounds their
# memory at iw = 5000 or mc = 1000. On a CPU, 512 rows are as fast per row as larger chunks.
CHUNK_ROWS = {"cpu": 512, "cuda": 65536}
# Files the queue owns in a run folder: never deleted by --rf or a fresh start.
KEPT_FILES = ("process.log",)
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


def check_run_dir(run_dir: str, args: argparse.Namespace) -> None:
    """Refuse to overwrite a run that holds a checkpoint unless told what to do with it, and
    to resume a run that was started with other options."""
    if not checkpoints.has_checkpoint(run_dir) or args.rf:
        return
    if not args.resume:
        raise ArgumentError(f"the run folder {run_dir} already holds a checkpoint: pass --resume to continue "
                            f"it or --rf to delete it and start over")
    config = read_config(run_dir)
    changed = changed_options(args, config) if config else []  # options, not hashes: old hashes differ
    if changed:
        raise ArgumentError(f"the run folder {run_dir} holds a run with other options (changed: "
                            f"{', '.join(changed)}); use another --run_id, or --rf to start over")


def prepare_run_dir(run_dir: str, args: argparse.Namespace) -> bool:
    """Create or clean the run folder; returns whether the run resumes from a checkpoint."""
    os.makedirs(run_dir, exist_ok=True)
    resume = args.resume and not args.rf and checkpoints.has_checkpoint(run_dir)
    if not resume:  # --rf, or a fresh start that must not inherit records of an earlier attempt
        _clear(run_dir)
    clear_outcome(run_dir)
    return resume


def _clear(run_dir: str) -> None:
    for entry in os.listdir(run_dir):
        if entry in KEPT_FILES:
            continue
        path = os.path.join(run_dir, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def prepare_process(args: argparse.Namespace,
                    build: Callable[[argparse.Namespace, torch.device], RunComponents]) -> RunComponents:
    """The process settings and components of a run (also used by the efficiency measurements,
    ``ovis.training.efficiency``): device, determinism, seeds, threads (the glibc heap settings
    come from the environment: ``ovis.launch.RUN_ENVIRONMENT``)."""
    device = resolve_device(args.device)
    configure_determinism(args.deterministic)
    seed_everything(args.seed)
    components = build(args, device)
    configure_threads(args, components)
    return components


def main(argv: Optional[Sequence[str]] = None,
         build: Callable[[argparse.Namespace, torch.device], RunComponents] = build_components) -> int:
    """Entry point of ``run.py``; returns the process exit code.

    ``build(args, device)`` makes the data sets, model and estimators (default: from the
    ``ovis`` registries; tests substitute small stand-ins)."""
    try:
        args = parse_args(argv)
    except SystemExit as exit_request:  # argparse has printed its message
        return int(exit_request.code or 0)
    except ArgumentError as error:
        print(f"run.py: error: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS

    run_id = args.run_id or default_run_id(args)
    run_dir = os.path.join(args.root, args.exp, run_id)
    try:
        check_run_dir(run_dir, args)
        components = prepare_process(args, build)
    except ValueError as error:  # ArgumentError included
        print(f"run.py: error: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS

    try:
        resume = prepare_run_dir(run_dir, args)
    except OSError as error:
        print(f"run.py: error: cannot prepare the run folder {run_dir}: {error}", file=sys.stderr)
        return exit_codes.for_os_error(error)
    write_config(run_dir, dict(vars(args), hash=run_hash(args), run_id=run_id))
    logger = run_logger(run_dir, silent=args.silent)
    try:
        try:
            trainer = Trainer(args, components, run_dir, logger, resume=resume)
        except Exception as error:  # e.g. a checkpoint that does not fit the model
            message = f"cannot start the run: {type(error).__name__}: {error}"
            write_outcome(run_dir, FAILED, message + "\n" + traceback.format_exc())
            logger.error("Failed. %s", message)
            return exit_codes.FAILED
        return trainer.run()
    finally:
        close_logger(logger)
