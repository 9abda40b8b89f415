"""Process identity and liveness, so that any manager can tell a live run from a dead one.

A running run records the host, pid and start time of both its owner (the manager, or the
Slurm task, that launched it) and its child process, plus a heartbeat. On the same host the pids
decide: a pid counts only if its start time matches the recorded one (pids are reused). On another
host only the heartbeat can: a run whose heartbeat is older than its ``stale_after`` is dead.

Children are started through ``python -m ovis.queue.child``, which asks Linux to send them SIGTERM
when the thread that launched them dies (``PR_SET_PDEATHSIG``): a SIGKILLed manager does not leave
children running silently; they checkpoint and exit like on Ctrl-C. The kernel hands such a child
to each next thread of the dying manager and signals it again every time: run.py ignores the
repeated SIGTERMs while it stops (``ovis.run_folder.StopRequests``).
"""
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass
from typing import List, Optional

HOST = socket.gethostname()


def process_start_time(pid: int) -> Optional[str]:
    """Start time of ``pid`` in clock ticks since boot (Linux ``/proc``); None elsewhere or when
    the process does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19]  # field 22 of proc(5), counting from 1 with pid and comm removed


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:].split()[0] == "Z"


def process_alive(pid: Optional[int], start_time: Optional[str] = None) -> bool:
    """Whether ``pid`` runs on this host and, when ``start_time`` is given and ``/proc`` exists,
    is the same process that was recorded (not a later one that reused the pid)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if _is_zombie(pid):
        return False
    if start_time is not None:
        current = process_start_time(pid)
        if current is not None and current != start_time:
            return False
    return True


@dataclass(frozen=True)
class ProcessIdentity:
    host: str
    pid: int
    start_time: Optional[str]

    @classmethod
    def of(cls, pid: int) -> "ProcessIdentity":
        return cls(HOST, pid, process_start_time(pid))

    @classmethod
    def current(cls) -> "ProcessIdentity":
        return cls.of(os.getpid())

    def alive(self) -> bool:
        return self.host == HOST and process_alive(self.pid, self.start_time)

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.host}:{self.pid}"


def run_is_alive(record: dict, now: Optional[float] = None) -> bool:
    """Whether a ``running`` record still has a live owner or child.

    Same host: the recorded owner or child process exists (an orphaned child that is still
    checkpointing counts as alive). Other host: the heartbeat is fresher than ``stale_after``."""
    now = time.time() if now is None else now
    if record.get("host") == HOST:
        candidates = [record.get("owner") or {}, {"pid": record.get("pid"), "start_time": record.get("pid_start")}]
        return any(process_alive(c.get("pid"), c.get("start_time")) for c in candidates if c.get("pid"))
    heartbeat = record.get("heartbeat") or 0.0
    return now - heartbeat < float(record.get("stale_after") or 600.0)


def child_command(argv: List[str], parent_pid: int) -> List[str]:
    """Wrap ``argv`` so that it runs with PR_SET_PDEATHSIG set (see ``ovis.queue.child``)."""
    return [sys.executable, "-m", "ovis.queue.child", str(parent_pid), "--"] + list(argv)
