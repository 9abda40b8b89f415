"""Process exit codes shared by run.py, the queue and the other scripts: the one definition.

``0`` success; ``1`` failed (an exception, a diverged or non-finite run, failed runs in a
grid); ``2`` bad arguments or input, refused before any work (a folder the user cannot write
included: ``for_os_error``); ``130`` aborted by SIGINT or SIGTERM (128 + SIGINT; a process killed
by SIGTERM before its handler ran exits 143).
"""
import errno
import signal

SUCCESS = 0
FAILED = 1
BAD_ARGUMENTS = 2
ABORTED = 130
ABORTED_CODES = (ABORTED, 128 + signal.SIGTERM)


PERMISSION_ERRNOS = (errno.EACCES, errno.EPERM, errno.EROFS)


def for_os_error(error: OSError) -> int:
    """The exit code of a script stopped by ``error``: ``BAD_ARGUMENTS`` when the user must pick
    another folder or fix its permissions (read-only, no permission), else ``FAILED``."""
    return BAD_ARGUMENTS if error.errno in PERMISSION_ERRNOS else FAILED


def describe(returncode: int) -> str:
    """A readable account of a child's return code: ``exit code 1``, ``killed by SIGKILL``..."""
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if returncode > 128:
        try:
            return f"exit code {returncode} ({signal.Signals(returncode - 128).name})"
        except ValueError:
            pass
    return f"exit code {returncode}"
