"""``python -m ovis.queue.child PARENT_PID -- COMMAND...``: run COMMAND so that it receives
SIGTERM when its parent dies.

Sets Linux's ``PR_SET_PDEATHSIG`` (kept across ``exec``) and then replaces itself with COMMAND,
so the command keeps this process's pid. Doing this in a separate process instead of a
``preexec_fn`` keeps the manager's threads safe (``preexec_fn`` is unsafe with threads). On other
systems the command just runs; a dead manager is then detected through the run's heartbeat.
"""
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
EXIT_ABORTED = 130


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask the kernel to send ``sig`` to this process when its parent thread exits."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0


def main(argv) -> None:
    if len(argv) < 3 or argv[1] != "--":
        sys.exit("usage: python -m ovis.queue.child PARENT_PID -- COMMAND [ARGS...]")
    parent_pid, command = int(argv[0]), argv[2:]
    set_parent_death_signal()
    if os.getppid() != parent_pid:
        sys.exit(EXIT_ABORTED)  # the parent died before the signal was armed
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
