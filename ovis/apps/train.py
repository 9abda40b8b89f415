"""``run.py``'s command line: parse and check the options, then the run folder's life cycle
(``ovis.run_folder.run_script``) around the ``Trainer``.

Exit codes (``ovis.exit_codes``): 0 success; 1 failed (message in ``outcome.txt``); 2 bad
arguments, refused before the run folder is touched; 130 aborted by SIGINT / SIGTERM.
"""
import argparse
import functools
import os
import sys
from typing import Callable, Optional, Sequence

import torch

from ovis import exit_codes
from ovis.cli import ArgumentError
from ovis.run_folder import StopRequests, run_script, run_work
from ovis.training import checkpoint as checkpoints
from ovis.training.arguments import default_run_id, parse_args
from ovis.training.components import build_components, prepare_process
from ovis.training.trainer import RunComponents, Trainer

SCRIPT = "run.py"


def _raise(error: Exception) -> None:
    raise error


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
        print(f"{SCRIPT}: error: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    run_dir = os.path.join(args.root, args.exp, args.run_id or default_run_id(args))

    def train(components: RunComponents, resume: bool, logger) -> int:
        try:
            trainer = Trainer(args, components, run_dir, logger, resume=resume)
        except Exception as error:  # e.g. a checkpoint that does not fit the model: a failed run
            return run_work(run_dir, functools.partial(_raise, error), logger, StopRequests(logger),
                            lambda: "the run could not start")
        return trainer.run()

    def results(folder: str) -> str:
        return "a checkpoint" if checkpoints.has_checkpoint(folder) else ""

    return run_script(SCRIPT, args, run_dir, results, lambda: prepare_process(args, build), train)
