"""The queue database's lock: a ``filelock.FileLock`` on ``<exp_dir>/.db.json.lock`` (managers on
several machines sharing the folder exclude each other; a kill releases it with its process),
and ``.db.json.lock.holder``, who took it last, named in every message about a held lock."""
import contextlib
import fcntl
import os
import subprocess
import sys
import time
from typing import Callable, Optional

import filelock

from ovis.queue.process import ProcessIdentity
from ovis.queue.storage import DatabaseError, os_error_advice

LOCK_NOTICE_AFTER = 2.0  # seconds of waiting for the lock before ``on_wait`` is told
# Run by a second process: exit 0 when the probe file's lock is refused to it, 1 when it gets it.
OTHER_PROCESS_PROBE = ("import fcntl, sys\nf = open(sys.argv[1], 'a')\ntry:\n    fcntl.flock(f, fcntl.LOCK_EX | "
                       "fcntl.LOCK_NB)\nexcept OSError:\n    sys.exit(0)\nsys.exit(1)")
SHARED_FOLDER_ADVICE = ("put --root on a file system whose flock excludes processes and machines (local disks; "
                        "NFS v4, or v3 with the lock manager; Lustre mounted with -o flock; GPFS; BeeGFS), see the "
                        "README's 'Several machines' paragraph")


def check_exclusive_locks(folder: str) -> None:
    """Refuse (DatabaseError) a folder where one process's exclusive ``flock`` does not keep
    another process out: managers sharing the queue there would execute runs twice."""
    me = ProcessIdentity.current()
    probe = os.path.join(folder, f".flock-probe.{me.host}.{me.pid}")
    try:
        os.makedirs(folder, exist_ok=True)
        f = open(probe, "a")
    except OSError as error:
        raise os_error_advice(error, probe, "create the folder of") from None
    try:
        with f:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            other = subprocess.run([sys.executable, "-c", OTHER_PROCESS_PROBE, probe], timeout=60,
                                   capture_output=True, text=True)
    except OSError as error:
        raise DatabaseError(f"the runs folder {folder} does not support flock locks ({error.strerror or error}): the "
                            f"queue's lock cannot keep managers apart; {SHARED_FOLDER_ADVICE}") from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(probe)
    if other.returncode == 1:
        raise DatabaseError(f"the runs folder {folder} does not give exclusive locks between processes: a second "
                            f"process took the flock lock that this one held, so managers sharing the queue would "
                            f"execute runs twice; {SHARED_FOLDER_ADVICE}")
    if other.returncode != 0:
        raise DatabaseError(f"could not check the locks of the runs folder {folder}: the probe process ended with "
                            f"{other.returncode}: {other.stderr.strip()[-300:]}")


class QueueLock:
    """``acquire()`` waits up to ``timeout`` seconds (telling ``on_wait`` after
    ``LOCK_NOTICE_AFTER``) and returns the held ``filelock.FileLock``, or raises DatabaseError."""

    def __init__(self, path: str, timeout: float, on_wait: Optional[Callable[[str], None]] = None):
        self.path, self.holder_path = path, path + ".holder"
        self.timeout, self.on_wait = timeout, on_wait

    def holder(self) -> str:
        """Who took the lock last (``host pid N since HH:MM:SS``), as written by that process."""
        try:
            with open(self.holder_path) as f:
                return f.read().strip() or "another process"
        except OSError:
            return "another process"

    def acquire(self) -> filelock.FileLock:
        lock = filelock.FileLock(self.path, timeout=self.timeout)
        first_wait = min(LOCK_NOTICE_AFTER, self.timeout) if self.on_wait else self.timeout
        try:
            try:
                lock.acquire(timeout=first_wait)
            except filelock.Timeout:
                if first_wait >= self.timeout:
                    raise
                self.on_wait(f"waiting up to {self.timeout:.0f} s for the lock {self.path}, held by {self.holder()} "
                             f"(a manager.py or dbutils.py at work: the lock is free once it ends; stop it if it "
                             f"hangs, or pass a longer --lock_timeout)")
                lock.acquire(timeout=self.timeout - first_wait)
        except filelock.Timeout:
            raise DatabaseError(
                f"could not lock {self.path} within {self.timeout:.0f} s: it is held by {self.holder()} (another "
                f"manager.py or dbutils.py). Wait for it, stop it, or pass a longer --lock_timeout") from None
        except OSError as error:
            raise os_error_advice(error, self.path, "lock") from None
        me = ProcessIdentity.current()
        with contextlib.suppress(OSError), open(self.holder_path, "w") as f:
            f.write(f"{me.host} pid {me.pid} since {time.strftime('%H:%M:%S')}\n")
        return lock

    def purge(self) -> bool:
        """Remove the lock file when no process holds the lock; refuse (DatabaseError) when one does."""
        if not os.path.exists(self.path):
            return False
        probe = filelock.FileLock(self.path, timeout=0)
        try:
            probe.acquire()
        except filelock.Timeout:
            raise DatabaseError(f"the lock {self.path} is held by {self.holder()}: not removed (two processes would "
                                f"then write the queue at once). Stop that process or wait for it to finish") from None
        try:
            os.remove(self.path)
        finally:
            probe.release()
        return True
