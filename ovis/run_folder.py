"""The life cycle of a launched script's run folder: the one definition every script calls.

``run_script`` runs it, in this order:

1. refuse or resume (before any work; exit code 2 with one message): a folder that holds results
   is refused without ``--resume`` or ``--rf``, and ``--resume`` of a run started with other
   options is refused (``ovis.identity.changed_options``);
2. the script's set-up (``setup``: data, model...); a ``ValueError`` there is a bad option (exit 2,
   the folder untouched);
3. the folder is created, or emptied for a fresh start (``--rf``, or no results to resume),
   keeping the queue's files (``ovis.launch.QUEUE_FILES``); the old outcome marker is removed;
4. ``config.json``: every option, the run identity (``hash``) and the script;
5. the logger (``run.log``, and the console unless ``--silent``);
6. the signal handlers (``StopRequests``), then the work;
7. the outcome marker (``ovis.records``) and the exit code (``ovis.exit_codes``): 0 success,
   1 failed (an exception: its message in the marker, the traceback after it), 130 aborted.

SIGINT / SIGTERM: a first signal sets a flag that the work checks at its safe points
(``StopRequests.check`` raises ``AbortRequested``); with ``at_once`` it raises at once instead,
unless a write is in progress. A second SIGINT (Ctrl-C twice) stops at once with
``KeyboardInterrupt``, except while a checkpoint or the outcome marker is being written
(``StopRequests.writing``): that write finishes first. Repeated SIGTERMs never stop at once: the
kernel sends one per exiting thread of a killed manager (``PR_SET_PDEATHSIG`` follows the thread
that started the run), and Slurm follows its SIGTERM with SIGKILL anyway.
"""
import argparse
import contextlib
import logging
import os
import shutil
import signal
import sys
import threading
import traceback
from typing import Any, Callable, Dict, Iterator, Optional

from ovis import exit_codes, records
from ovis.identity import changed_options, run_hash
from ovis.launch import QUEUE_FILES, RUN_LOG, DivergenceError

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class AbortRequested(Exception):
    """SIGINT or SIGTERM: the work stopped at a safe point."""


class StopRequests:
    """Handlers of ``STOP_SIGNALS`` for the duration of a ``with`` block (main thread only:
    Python delivers signals there). ``at_once``: the first signal raises ``AbortRequested``
    where the work is (outside ``writing`` blocks), for work without safe points."""

    def __init__(self, logger: logging.Logger, at_once: bool = False):
        self.logger = logger
        self.at_once = at_once
        self.signum: Optional[int] = None
        self._previous: Dict = {}
        self._writing = 0

    @property
    def pending(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A block (checkpoint, outcome marker) that no signal interrupts."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1

    def check(self, where: str) -> None:
        """Raise ``AbortRequested`` if a signal arrived; ``where``: what is kept, for the message."""
        if self.signum is not None:
            raise AbortRequested(f"{signal.Signals(self.signum).name} received: stopped {where}; "
                                 f"--resume continues the run")

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            if self.at_once and not self._writing:
                raise AbortRequested(f"{name} received: stopped; what was written is kept, --resume continues")
            self.logger.warning("%s received: stopping after the current step", name)
        elif signum == signal.SIGINT and not self._writing:  # Ctrl-C twice: stop now
            raise KeyboardInterrupt(f"{name} received twice: stopped at once")
        else:
            self.logger.warning("%s received again: ignored, the run is already stopping after %s", name,
                                "this write" if self._writing else "the current step")


class _ConsoleHandler(logging.Handler):
    """Console output that does not break a running progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def run_logger(run_dir: str, silent: bool = False) -> logging.Logger:
    """A logger writing to ``<run_dir>/run.log`` (appending, so resumed runs keep their history)
    and, unless ``silent``, to the console (warnings and failures always)."""
    logger = logging.getLogger(f"ovis.run.{os.path.abspath(run_dir)}")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    close_logger(logger)
    file_handler = logging.FileHandler(os.path.join(run_dir, RUN_LOG))
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(file_handler)
    console = _ConsoleHandler()
    console.setLevel(logging.WARNING if silent else logging.INFO)
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(console)
    return logger


def close_logger(logger: logging.Logger) -> None:
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def check_run_folder(run_dir: str, args: argparse.Namespace, results: str) -> bool:
    """Step 1: refuse (``ValueError`` saying what to pass) or accept; returns whether the run resumes.
    ``results``: what the folder holds that a fresh start would delete (``""``: nothing)."""
    if not results or args.rf:
        return False
    if not args.resume:
        raise ValueError(f"the run folder {run_dir} already holds {results}: pass --resume to continue it or --rf "
                         f"to delete it and start over")
    config = records.read_config(run_dir)
    changed = changed_options(args, config) if config else []  # options, not hashes: old hashes differ
    if changed:
        raise ValueError(f"the run folder {run_dir} holds a run with other options (changed: {', '.join(changed)}); "
                         f"use another --run_id, or --rf to start over")
    return True


def prepare_run_folder(run_dir: str, resume: bool, clear: bool = True) -> None:
    """Step 3: create the folder, or empty it (but ``QUEUE_FILES``) unless resuming or not ``clear``;
    remove the marker."""
    os.makedirs(run_dir, exist_ok=True)
    if clear and not resume:  # a fresh start must not inherit the records of an earlier attempt
        for entry in os.listdir(run_dir):
            path = os.path.join(run_dir, entry)
            if entry in QUEUE_FILES:
                continue
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.remove(path)
    records.clear_outcome(run_dir)


def run_work(run_dir: str, work: Callable[[], None], logger: logging.Logger, stop: StopRequests,
             failure_note: Callable[[], str] = lambda: "") -> int:
    """Steps 6 and 7: ``work()`` under ``stop``'s handlers, then the outcome marker (written where no
    second signal can tear it) and the exit code. ``failure_note()``: what a failure leaves behind,
    added to its message (``[the checkpoint of step 40 is kept]``)."""
    def write(outcome: str, message: str = "") -> None:
        with stop.writing():
            records.write_outcome(run_dir, outcome, message)

    with stop:
        try:
            work()
            write(records.SUCCESS)
            return exit_codes.SUCCESS
        except (AbortRequested, KeyboardInterrupt) as stopped:
            message = str(stopped) or "interrupted; what was written is kept"
            write(records.ABORTED, message)
            logger.warning("Aborted: %s", message)
            return exit_codes.ABORTED
        except Exception as error:
            note = failure_note()
            message = f"{type(error).__name__}: {error}" + (f" [{note}]" if note else "")
            write(records.FAILED, message + "\n" + traceback.format_exc())
            logger.error("Failed. %s", message)  # one line, on the terminal even with --silent
            if not isinstance(error, DivergenceError):  # a bug, not the optimisation: where it happened
                logger.info("%s", traceback.format_exc())
            return exit_codes.FAILED


def run_script(script: str, args: argparse.Namespace, run_dir: str, results: Callable[[str], str],
               setup: Callable[[], Any], work: Callable[[Any, bool, logging.Logger], int],
               config: Optional[dict] = None, clear: bool = True) -> int:
    """The whole life cycle (module docstring) of one script; returns its exit code.

    ``results(run_dir)``: what the folder holds to refuse or resume (``""``: nothing); ``setup()``
    builds what the work needs (``ValueError``: bad options); ``work(built, resume, logger)`` runs
    steps 6 and 7 (``run_work``) and returns the exit code; ``config``: added to ``config.json``;
    ``clear=False``: a fresh start keeps the folder's other files (a folder the user names, not one
    the script owns)."""
    try:
        resume = check_run_folder(run_dir, args, results(run_dir))
        built = setup()
    except ValueError as error:
        print(f"{script}: error: {error}", file=sys.stderr)
        return exit_codes.BAD_ARGUMENTS
    try:
        prepare_run_folder(run_dir, resume, clear)
    except OSError as error:
        print(f"{script}: error: cannot prepare the run folder {run_dir}: {error}", file=sys.stderr)
        return exit_codes.for_os_error(error)
    records.write_config(run_dir, {**vars(args), "hash": run_hash(args), "run_id": os.path.basename(run_dir),
                                   "script": script, **(config or {})})
    logger = run_logger(run_dir, silent=getattr(args, "silent", False))
    try:
        return work(built, resume, logger)
    finally:
        close_logger(logger)
