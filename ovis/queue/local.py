"""The local backend: worker threads that take runs from the queue and execute them.

Each worker is pinned to one device (``ovis.queue.devices.WorkerSlot``); it claims the next
queued run atomically, executes it (``ovis.queue.executor.RunExecution``) and repeats until
the queue is empty. Several managers, on one machine or several sharing the experiment folder,
can work on the same queue: claims are exclusive, so no run is executed twice.

While it works, and once more before it exits, the manager looks for runs whose manager and
process are gone (killed managers on any host sharing the queue: ``RunDatabase.recover``, from
the liveness files) every heartbeat interval, and queues them again (with ``requeue_dead``); an
idle worker picks them up and they resume from their checkpoints.

The first SIGINT (Ctrl-C), SIGTERM or SIGHUP asks every run to checkpoint and exit (they are
recorded as ``aborted`` and resume when requeued); a second one kills them at once.
"""
import os
import signal
import threading
import time
from typing import Dict, List, Optional

from ovis import exit_codes
from ovis.queue import failures
from ovis.queue.database import ABORTED, FAILED, SUCCESS, DatabaseError, RunDatabase
from ovis.queue.devices import WorkerSlot
from ovis.queue.display import Console, GridProgress, format_counts, format_duration, status_counts
from ovis.queue.executor import LaunchSettings, RunExecution, StopRequest
from ovis.queue.process import ProcessIdentity
from ovis.records import clear_outcome

EXIT_OK, EXIT_FAILED_RUNS, EXIT_INTERRUPTED = exit_codes.SUCCESS, exit_codes.FAILED, exit_codes.ABORTED
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class LocalManager:
    """Runs the queue of ``database`` on ``slots`` until it is empty or a stop is requested."""

    def __init__(self, database: RunDatabase, settings: LaunchSettings, slots: List[WorkerSlot],
                 console: Optional[Console] = None, status_interval: Optional[float] = None,
                 requeue_dead: bool = True, fail_fast: bool = False):
        self.database = database
        self.settings = settings
        self.slots = slots
        self.console = console or Console()
        # Redraw the live bar every second on a terminal; print a line every 30 s in logs.
        self.status_interval = status_interval or (1.0 if self.console.interactive else 30.0)
        self.progress = GridProgress(self.console, settings.exp, self.status_interval)
        self.owner = ProcessIdentity.current()
        self.stop = StopRequest()
        self.finished: Dict[str, int] = {SUCCESS: 0, FAILED: 0, ABORTED: 0}
        self.errors: List[str] = []
        self.requeue_dead = requeue_dead
        self.fail_fast = fail_fast
        self.halted = threading.Event()  # --fail_fast: no new run starts; runs in flight finish
        self._lock = threading.Lock()

    # -- workers ---------------------------------------------------------------------------

    def _worker(self, slot: WorkerSlot) -> None:
        try:
            while not (self.stop.stop.is_set() or self.halted.is_set()):
                record = self.database.claim(self.owner, slot.device, self.settings.stale_after)
                if record is None:
                    return
                self.console.log(f"start  {record['run_id']} on {slot.device} (attempt {record['attempts']})")
                started = time.time()
                execution = RunExecution(self.database, record, self.settings, self.owner, self.stop,
                                         cuda_visible_devices=slot.cuda_visible_devices,
                                         cpu_threads=slot.cpu_threads, log=self.console.log)
                status = execution.execute()
                if self.fail_fast and execution.failure == failures.ERROR and not self.halted.is_set():
                    self.halted.set()
                    self.console.log(f"--fail_fast: {record['run_id']} failed with an error; no new run starts, "
                                     f"the runs in flight finish")
                with self._lock:
                    self.finished[status] = self.finished.get(status, 0) + 1
                self.console.log(f"{status:<8}{record['run_id']} after {format_duration(time.time() - started)}"
                                 + (f"  (see {os.path.join(self.database.run_dir(record['run_id']), 'process.log')})"
                                    if status == FAILED else ""))
        except Exception as error:  # a worker must not die silently: stop the manager with the reason
            with self._lock:
                self.errors.append(f"worker {slot.name}: {error}")
            self.console.log(f"worker {slot.name} stopped: {error}")
            self.stop.stop.set()

    # -- signals and status ----------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if not self.stop.stop.is_set():
            self.stop.stop.set()
            self.console.log(f"{name}: stopping; running runs checkpoint and are marked aborted "
                             f"(they resume when requeued). Send it again to kill them now.")
        elif not self.stop.kill.is_set():
            self.stop.kill.set()
            self.console.log(f"{name} again: killing the running runs")

    def counts(self) -> Dict[str, int]:
        try:
            return status_counts(self.database.records())
        except (DatabaseError, FileNotFoundError, OSError):
            return {}

    def recover_dead_runs(self) -> int:
        """Abort the running runs whose manager and process are gone and, with ``requeue_dead``,
        queue them again; returns how many were queued again."""
        recovered = self.database.recover(by=f"manager {self.owner}")
        for record in recovered:
            self.console.log(f"aborted {record['run_id']}: {record['error'].splitlines()[0]}")
        if not (recovered and self.requeue_dead):
            return 0
        requeued = self.database.requeue(1, [r["run_id"] for r in recovered], prepare=clear_outcome,
                                         note=f"requeued by manager {self.owner}: its process was gone")
        count = sum(len(ids) for ids in requeued.values())
        if count:
            self.console.log(f"requeued {count} run(s) of dead managers; they resume from their checkpoints")
        return count

    def _try_recovery(self) -> int:
        try:
            return self.recover_dead_runs()
        except (DatabaseError, OSError) as error:  # the runs in flight go on; the next check tries again
            self.console.log(f"could not look for runs of dead managers: {error}")
            return 0

    def run(self) -> int:
        """Execute the queue; returns the exit code (0, 1 if runs failed, 130 if interrupted)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS
                    if threading.current_thread() is threading.main_thread()}
        threads: Dict[str, threading.Thread] = {}
        try:
            self._start_idle_workers(threads)
            next_status = next_recovery = 0.0
            while True:
                now = time.time()
                if now >= next_status:
                    self.progress.update(self.counts())
                    next_status = now + min(self.status_interval, 1.0)
                working = any(thread.is_alive() for thread in threads.values())
                if not self.stop.stop.is_set() and (now >= next_recovery or not working):
                    next_recovery = now + self.settings.heartbeat_interval
                    if self._try_recovery():
                        self._start_idle_workers(threads)
                        continue
                if not working:
                    break
                for thread in threads.values():
                    thread.join(timeout=0.2)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.progress.close()
        self.console.log(f"done: {format_counts(self.finished)} in this session")
        self.progress.close(self.counts())
        if self.stop.stop.is_set() or self.errors:
            return EXIT_INTERRUPTED if not self.errors else EXIT_FAILED_RUNS
        return EXIT_FAILED_RUNS if self.finished[FAILED] else EXIT_OK

    def _start_idle_workers(self, threads: Dict[str, threading.Thread]) -> None:
        """A worker thread for each slot that has none running (none yet, or it found the queue empty)."""
        for slot in self.slots:
            if slot.name not in threads or not threads[slot.name].is_alive():
                threads[slot.name] = threading.Thread(target=self._worker, args=(slot,), name=slot.name, daemon=True)
                threads[slot.name].start()
