"""Executing one claimed run: the child process, its heartbeat, its stop and its outcome.

Shared by the local manager's workers and the Slurm tasks. The command follows DESIGN.md
section 5::

    python <script> <grid arguments> --exp <exp> --root <root> --data_root <data> --run_id <id> --resume

The bookkeeping options come last, so they win over anything before them (argparse keeps the
last occurrence; the spec may not set them anyway). The child runs in its own process group with
stdout and stderr appended to ``<run_dir>/process.log``.

Outcome (exit codes of run.py): 0 success, 130 (or 143) aborted, anything else failed; the
outcome marker ``outcome.txt`` (``ovis/records.py``) is read too and written when the script
did not write one, so that the run folder alone tells what happened.
"""
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

from ovis import exit_codes, records
from ovis.launch import PROCESS_LOG, RUN_ENVIRONMENT
from ovis.files import remove_stale_temporaries
from ovis.queue import failures
from ovis.queue.database import ABORTED, FAILED, SUCCESS, RunDatabase
from ovis.queue.liveness import log_tail
from ovis.queue.process import HOST, ProcessIdentity, child_command, process_alive

ERROR_TAIL_CHARS = 4000
ERROR_TAIL_LINES = 40


@dataclass
class LaunchSettings:
    """Where and how runs are launched."""
    script: str                 # absolute path of the script
    exp: str                    # experiment name (--exp)
    root: str                   # absolute experiments root (--root); runs live in <root>/<exp>/<run_id>
    data_root: str              # absolute data directory (--data_root)
    project_root: str           # working directory of the runs, put on PYTHONPATH
    python: str = sys.executable
    heartbeat_interval: float = 30.0
    stale_after: float = 600.0  # a run whose heartbeat is older is dead for managers on other hosts
    grace: float = 300.0        # seconds a stopped run gets to checkpoint before it is killed
    threads_option: bool = False  # the script accepts --threads (run.py): CPU workers pass their share

    @property
    def exp_dir(self) -> str:
        return os.path.join(self.root, self.exp)


class StopRequest:
    """Shared by the workers of a manager: ``stop`` asks runs to checkpoint and exit, ``kill``
    ends them at once."""

    def __init__(self):
        self.stop = threading.Event()
        self.kill = threading.Event()


def run_command(settings: LaunchSettings, argv: List[str], run_id: str, cpu_threads: Optional[int] = None) -> List[str]:
    """The run's command line. A CPU worker's share of the cores comes first as ``--threads``
    (when the script accepts it), so that a ``--threads`` of the grid point wins."""
    threads = ["--threads", str(cpu_threads)] if cpu_threads and settings.threads_option else []
    return ([settings.python, settings.script] + threads + list(argv)
            + ["--exp", settings.exp, "--root", settings.root, "--data_root", settings.data_root,
               "--run_id", run_id, "--resume"])


def run_environment(settings: LaunchSettings, cuda_visible_devices: Optional[str],
                    cpu_threads: Optional[int]) -> dict:
    env = {**RUN_ENVIRONMENT, **os.environ}  # heap thresholds, passive OpenMP waits (unless set)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [settings.project_root, env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    if cuda_visible_devices is not None:
        env["CUDA_VISIBLE_DEVICES"] = cuda_visible_devices
    if cpu_threads:
        # Several CPU runs side by side: without this each one would use every core (or the
        # manager's own OMP_NUM_THREADS, meant for one process).
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[name] = str(cpu_threads)
    return env


def classify_exit(returncode: int, marker: Optional[str], stopped: bool) -> Tuple[str, str]:
    """``(status, note)`` from the exit code, the outcome marker and whether we asked it to stop.

    Any non-zero exit after a stop request counts as aborted (a run interrupted while starting up
    may die of the signal before it can checkpoint): requeuing it is always safe."""
    if returncode == 0:
        if marker in (ABORTED, FAILED):
            return marker, f"exit code 0, outcome marker says {marker}"
        return SUCCESS, "exit code 0"
    described = exit_codes.describe(returncode)
    if returncode < 0:
        if stopped:
            return ABORTED, f"{described.replace('killed by', 'ended by')} after a stop request"
        return FAILED, described + (" (out of memory?)" if returncode == -signal.SIGKILL else "")
    if returncode in exit_codes.ABORTED_CODES or stopped:
        return ABORTED, described + (" after a stop request" if stopped else "")
    if returncode == exit_codes.BAD_ARGUMENTS:
        return FAILED, f"{described} (bad arguments)"
    return FAILED, described


def _tail(text: str) -> str:
    lines = text.rstrip().splitlines()[-ERROR_TAIL_LINES:]
    return "\n".join(lines)[-ERROR_TAIL_CHARS:]


class RunExecution:
    """One attempt of one claimed run."""

    def __init__(self, database: RunDatabase, record: dict, settings: LaunchSettings, owner: ProcessIdentity,
                 stop: StopRequest, cuda_visible_devices: Optional[str] = None, cpu_threads: Optional[int] = None,
                 log=None, external_stop: Callable[[], str] = lambda: failures.PREEMPTED):
        self.database = database
        self.record = record
        self.run_id = record["run_id"]
        self.settings = settings
        self.owner = owner
        self.stop = stop
        self.cuda_visible_devices = cuda_visible_devices
        self.cpu_threads = cpu_threads
        self.log = log or (lambda message: None)
        self.external_stop = external_stop  # the failure kind of a stop from outside the queue
        self.run_dir = database.run_dir(self.run_id)
        self.process: Optional[subprocess.Popen] = None
        self.child: Optional[ProcessIdentity] = None
        self.handed_over = False   # set when someone else (Slurm requeue) records the outcome
        self.failure: Optional[str] = None  # the kind of failure that ended the run (``ovis.queue.failures``)
        self._signalled_at: Optional[float] = None
        self._killed = False

    def execute(self) -> str:
        """Run to the end; record and return the status."""
        os.makedirs(self.run_dir, exist_ok=True)
        records.clear_outcome(self.run_dir)
        command = run_command(self.settings, self.record["argv"], self.run_id, self.cpu_threads)
        log_path = os.path.join(self.run_dir, PROCESS_LOG)
        with open(log_path, "a") as log_file:
            log_file.write(f"\n===== attempt {self.record['attempts']} on {HOST} ({self.record['device']}) "
                           f"at {time.strftime('%Y-%m-%d %H:%M:%S')}\n$ {subprocess.list2cmdline(command)}\n")
            log_file.flush()
            log_offset = log_file.tell()
            try:
                self.process = subprocess.Popen(
                    child_command(command, os.getpid()), stdout=log_file, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, cwd=self.settings.project_root, start_new_session=True,
                    env=run_environment(self.settings, self.cuda_visible_devices, self.cpu_threads))
            except OSError as error:
                return self._record(FAILED, "could not start", returncode=None,
                                    error=f"could not start {command[:2]}: {error}")
        self.child = ProcessIdentity.of(self.process.pid)
        self.database.set_process(self.record, self.child)
        try:
            returncode = self._wait()
        except BaseException:
            if not self.handed_over:
                self.end_process(grace=self.settings.grace)
                self._record(ABORTED, "the executing process was interrupted", returncode=None,
                             error="the process executing the run was interrupted")
            raise
        # a marker write that a signal cut short left a temporary file: the run's processes are gone
        remove_stale_temporaries(os.path.join(self.run_dir, records.OUTCOME_FILE))
        marker = records.read_outcome(self.run_dir)
        stopped = self._signalled_at is not None or self._killed
        status, note = classify_exit(returncode, marker, stopped)
        error = self._error_text(log_offset, note) if status != SUCCESS else None
        kind, detail = failures.classify_failure(returncode, error, self.external_stop) \
            if status != SUCCESS and not stopped else (None, None)
        self.failure = kind
        self._record(status, note, returncode=returncode, error=error, failure=kind, failure_detail=detail)
        if marker is None:  # the run folder alone tells what happened (written after the database)
            records.write_outcome(self.run_dir, status, "" if status == SUCCESS else f"({note})")
        return status

    def _wait(self) -> int:
        next_heartbeat = time.time() + self.settings.heartbeat_interval
        while True:
            try:
                return self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
            now = time.time()
            if self.stop.kill.is_set() and not self._killed:
                self._signal(signal.SIGKILL)
            elif self.stop.stop.is_set() and self._signalled_at is None:
                self._signal(signal.SIGINT)
            elif self._signalled_at is not None and now - self._signalled_at > self.settings.grace:
                self.log(f"{self.run_id}: no exit {self.settings.grace:.0f} s after SIGINT, killing it")
                self._signal(signal.SIGKILL)
            if now >= next_heartbeat:
                next_heartbeat = now + self.settings.heartbeat_interval
                if not self.database.heartbeat(self.record, self.child):
                    self.log(f"{self.run_id}: its heartbeat could not be written in {self.database.exp_dir}")

    def _signal(self, sig: int) -> None:
        """Signal the run's whole process group (data-loading workers included)."""
        if sig == signal.SIGKILL:
            self._killed = True
        elif self._signalled_at is None:
            self._signalled_at = time.time()
        try:
            os.killpg(self.process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass

    def end_process(self, grace: float) -> None:
        """SIGINT the run, give it ``grace`` seconds to checkpoint and exit, then SIGKILL it.

        Safe inside a signal handler that interrupted ``_wait``: it never waits on the Popen
        object (whose lock the interrupted frame may hold) but watches the pid."""
        if self.process is None:
            return
        self._signal(signal.SIGINT)
        deadline = time.time() + grace
        while process_alive(self.process.pid) and time.time() < deadline:
            time.sleep(0.1)
        if process_alive(self.process.pid):
            self._signal(signal.SIGKILL)

    def _error_text(self, offset: int, note: str) -> str:
        """The failure message and traceback of the outcome marker when the script wrote one,
        else how it ended (``killed by SIGKILL``...) and the last lines of this attempt's output."""
        marker_path = records.outcome_path(self.run_dir)
        if os.path.exists(marker_path):
            with open(marker_path, errors="replace") as f:
                marker = f.read()
            if len(marker.strip().splitlines()) > 1:
                return _tail(marker)
        output = log_tail(self.run_dir, offset, ERROR_TAIL_LINES)
        return _tail(f"{note}; last lines of its output:\n{output}" if output
                     else f"{note}; it printed nothing in this attempt")

    def _record(self, status: str, note: str, **fields) -> str:
        if not self.database.finish(self.run_id, self.owner, status, note, **fields):
            self.log(f"{self.run_id}: outcome {status} not recorded: the record was changed by another process")
        return status
