"""The kind of failure that ended a run, recorded as ``failure`` (and ``failure_detail``, one line)
so that users know whether to add memory, add time, or fix code:

* ``out_of_memory``: killed by SIGKILL without a stop request (what the kernel's OOM killer
  does), or a ``MemoryError`` / CUDA out-of-memory error;
* ``timeout``: stopped by Slurm at its time limit;
* ``preempted``: stopped from outside the queue (Slurm preemption or requeue, a SIGTERM);
* ``diverged``: the run raised ``ovis.launch.DivergenceError`` (a divergence check);
* ``error``: any other exception, detailed by the last line of its traceback.

``dbutils.py --requeue --kinds preempted,out_of_memory`` requeues only the runs of those kinds.
"""
import re
import signal
from typing import Callable, Iterable, List, Optional, Tuple

from ovis import exit_codes
from ovis.launch import DivergenceError

OUT_OF_MEMORY, TIMEOUT, PREEMPTED, DIVERGED, ERROR = "out_of_memory", "timeout", "preempted", "diverged", "error"
FAILURE_KINDS = (OUT_OF_MEMORY, TIMEOUT, PREEMPTED, DIVERGED, ERROR)

MEMORY_ERRORS = re.compile(r"\bMemoryError\b|\bOutOfMemoryError\b|CUDA out of memory|CUDA error: out of memory")
DIVERGENCE_ERRORS = re.compile(r"\b(%s)\b" % "|".join(
    cls.__name__ for cls in (DivergenceError, *DivergenceError.__subclasses__())))
EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit|Warning)\b")


def last_traceback_line(text: str) -> str:
    """The ``Type: message`` line that ends a traceback in ``text`` (else its last line)."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return next((line for line in reversed(lines) if EXCEPTION_LINE.match(line)), lines[-1] if lines else "")


def classify_failure(returncode: Optional[int], text: str,
                     external_stop: Callable[[], str] = lambda: PREEMPTED) -> Tuple[str, str]:
    """``(kind, detail)`` of a run that failed or was stopped without a stop request from its
    manager: ``returncode`` of its process, ``text`` its failure output (outcome marker or log
    tail), ``external_stop()`` the kind of a stop from outside (``timeout`` or ``preempted``)."""
    if returncode == -signal.SIGKILL:
        return OUT_OF_MEMORY, "killed by SIGKILL without a stop request (as the kernel's OOM killer does)"
    lines = text.splitlines()
    memory = next((line.strip() for line in reversed(lines) if MEMORY_ERRORS.search(line)), None)
    if memory is not None:
        return OUT_OF_MEMORY, memory
    diverged = next((line.strip() for line in lines if DIVERGENCE_ERRORS.search(line)), None)
    if diverged is not None:
        return DIVERGED, diverged.removeprefix("Failed. ")
    if returncode is not None and (returncode in exit_codes.ABORTED_CODES
                                   or returncode in (-signal.SIGTERM, -signal.SIGINT)):
        return external_stop(), f"stopped from outside the queue ({exit_codes.describe(returncode)})"
    return ERROR, last_traceback_line(text)


def parse_kinds(text: str) -> List[str]:
    """``--kinds a,b``: the kinds, or ValueError naming the allowed ones."""
    kinds = [kind.strip() for kind in text.split(",") if kind.strip()]
    unknown = [kind for kind in kinds if kind not in FAILURE_KINDS]
    if unknown or not kinds:
        raise ValueError(f"unknown failure kind(s) {', '.join(unknown) or repr(text)}: expected a comma-separated "
                         f"list of {', '.join(FAILURE_KINDS)}")
    return kinds


def count_kinds(records: Iterable[dict]) -> dict:
    """``{kind: [run ids]}`` of the records with a recorded failure kind, in ``FAILURE_KINDS`` order."""
    found = {kind: [] for kind in FAILURE_KINDS}
    for record in records:
        if record.get("failure") in found and record.get("status") != "success":
            found[record["failure"]].append(record.get("run_id"))
    return {kind: ids for kind, ids in found.items() if ids}
