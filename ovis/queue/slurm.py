"""The Slurm backend, through submitit: one array job, one task per queued run.

Each task claims its run in the shared database (skipping it if it is no longer queued, e.g.
taken by a local manager), executes it exactly like a local worker does (heartbeat, process.log,
outcome) and writes the status back. On preemption or time-out (submitit's USR2 signal) the task
asks the run to checkpoint, puts it back in the queue and lets submitit requeue the task, which
then resumes the run from its checkpoint.

``cluster="local"`` uses submitit's local executor (tests, a workstation without Slurm).
"""
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ovis.queue import failures
from ovis.queue.database import QUEUED, RunDatabase
from ovis.queue.display import Console, format_counts, status_counts
from ovis.queue.executor import LaunchSettings, RunExecution, StopRequest
from ovis.queue.process import ProcessIdentity

SUBMITIT_FOLDER = ".submitit"
# A stop this close to the time limit is a time-out: submitit asks for its signal 90 s before the
# limit, and Slurm may send it up to a minute earlier.
TIMEOUT_MARGIN_S = 180.0


class SubmissionError(RuntimeError):
    """The runs could not be submitted; the message says why."""


def _submitit():
    try:
        import submitit
    except ImportError:
        raise SubmissionError("--backend slurm needs submitit: pip install submitit "
                              "(or pip install 'ovis[slurm]')") from None
    return submitit


@dataclass
class SlurmOptions:
    """Resources of each task."""
    cluster: str = "slurm"             # "slurm", or "local" / "debug" (submitit's local executors)
    partition: Optional[str] = None
    time_min: int = 24 * 60
    gpus: int = 1
    cpus: int = 4
    mem_gb: float = 16.0
    parallelism: int = 64             # tasks of the array running at the same time
    setup: List[str] = field(default_factory=list)          # shell lines run before each task
    additional: Dict[str, str] = field(default_factory=dict)  # extra sbatch options

    def executor_parameters(self, name: str) -> dict:
        parameters = dict(name=name, timeout_min=self.time_min, gpus_per_node=self.gpus, cpus_per_task=self.cpus,
                          mem_gb=self.mem_gb, tasks_per_node=1, nodes=1, slurm_array_parallelism=self.parallelism)
        if self.partition:
            parameters["slurm_partition"] = self.partition
        if self.setup:
            parameters["slurm_setup"] = list(self.setup)
        if self.additional:
            parameters["slurm_additional_parameters"] = dict(self.additional)
        return parameters


class RunTask:
    """The callable submitted for one run (picklable; submitit's checkpoint protocol)."""

    def __init__(self, exp_dir: str, run_id: str, settings: LaunchSettings, time_min: Optional[float] = None):
        self.exp_dir = exp_dir
        self.run_id = run_id
        self.settings = settings
        self.time_min = time_min
        self._started = time.time()
        self._execution: Optional[RunExecution] = None

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_execution"] = None
        return state

    def __call__(self) -> str:
        submitit = _submitit()
        self._started = time.time()
        job_id = submitit.JobEnvironment().job_id
        database = RunDatabase(self.exp_dir)
        owner = ProcessIdentity.current()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
        device = f"cuda:{visible}" if visible else "cpu"
        record = database.claim(owner, device, self.settings.stale_after, run_id=self.run_id, job_id=job_id)
        restarts = int(os.environ.get("SLURM_RESTART_COUNT") or 0)
        if record is None and restarts and database.take_back(
                self.run_id, job_id, f"requeued by Slurm (job {job_id}, restart {restarts}): resumes"):
            record = database.claim(owner, device, self.settings.stale_after, run_id=self.run_id, job_id=job_id)
        if record is None:
            return f"{self.run_id}: not queued any more (taken by another worker or requeued), skipped"
        self._execution = RunExecution(database, record, self.settings, owner, StopRequest(),
                                       external_stop=self.stop_kind)
        status = self._execution.execute()
        self._execution = None
        return f"{self.run_id}: {status}"

    def stop_kind(self) -> str:
        """``timeout`` when the task is stopped near its time limit, else ``preempted``."""
        if self.time_min is None:
            return failures.PREEMPTED
        left = self.time_min * 60 - (time.time() - self._started)
        return failures.TIMEOUT if left <= TIMEOUT_MARGIN_S else failures.PREEMPTED

    def checkpoint(self):
        """Called by submitit on preemption or time-out: checkpoint the run, queue it again and
        resubmit this task."""
        submitit = _submitit()
        execution = self._execution
        if execution is not None:
            execution.handed_over = True
            execution.end_process(grace=self.settings.grace)
            kind = self.stop_kind()
            execution.database.finish(self.run_id, execution.owner, QUEUED, f"{kind} on Slurm: checkpointed, requeued",
                                      failure=kind, failure_detail=f"{kind} on Slurm (job {os.environ.get('SLURM_JOB_ID')})")
        return submitit.helpers.DelayedSubmission(RunTask(self.exp_dir, self.run_id, self.settings, self.time_min))


def submit(database: RunDatabase, settings: LaunchSettings, options: SlurmOptions, resubmit: bool = False,
           console: Optional[Console] = None) -> list:
    """Submit one array job for the queued runs (those not already submitted, unless
    ``resubmit``); record the job ids; return the submitit jobs."""
    submitit = _submitit()
    console = console or Console()
    queued = [r for r in database.records() if r.get("status") == QUEUED and isinstance(r.get("run_id"), str)
              and (resubmit or not r.get("job_id"))]
    if not queued:
        console.log("nothing to submit: no queued run without a job (use --resubmit to submit those again)")
        return []
    tasks = [RunTask(database.exp_dir, r["run_id"], settings, options.time_min) for r in queued]
    try:
        executor = submitit.AutoExecutor(folder=os.path.join(database.exp_dir, SUBMITIT_FOLDER),
                                         cluster=options.cluster)
        executor.update_parameters(**options.executor_parameters(f"ovis-{settings.exp}"))
        jobs = executor.submit_array(tasks)
    except Exception as error:  # sbatch missing or refusing, bad parameters: submitit raises many kinds
        raise SubmissionError(f"submitting {len(tasks)} runs to {options.cluster} failed: "
                              f"{type(error).__name__}: {error}") from error
    database.set_job_ids({task.run_id: str(job.job_id) for task, job in zip(tasks, jobs)})
    console.log(f"submitted {len(jobs)} runs to {options.cluster} (job {jobs[0].job_id.split('_')[0]}); "
                f"logs in {os.path.join(database.exp_dir, SUBMITIT_FOLDER)}")
    return jobs


def wait(database: RunDatabase, jobs: list, console: Optional[Console] = None, interval: float = 5.0) -> List[str]:
    """Wait for the jobs, showing the queue's status; return the tasks' errors."""
    console = console or Console()
    errors = []
    pending = list(jobs)
    while pending:
        pending = [job for job in pending if not job.done()]
        console.status(f"[{os.path.basename(database.exp_dir)}] {format_counts(status_counts(database.records()))}"
                       f" | {len(pending)} jobs pending or running")
        if pending:
            time.sleep(interval)
    console.close()
    for job in jobs:
        try:
            console.log(str(job.result()))
        except Exception as error:  # the task's exception, pickled back by submitit
            errors.append(f"job {job.job_id}: {error}")
            console.log(f"job {job.job_id} failed: {error}")
    return errors
