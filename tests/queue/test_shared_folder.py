"""The manager refuses a runs folder whose flock does not keep a second process out (as some
network file systems do), before it queues anything."""
import errno
import os

import pytest

from ovis.queue import lock
from ovis.queue.cli import manager_main

from .helpers import write_spec


def start(tmp_path, capsys):
    spec = write_spec(tmp_path, "shared", args=["--value a"])
    code = manager_main(["--exp", spec, "--root", str(tmp_path / "runs"), "--queue_only"])
    return code, capsys.readouterr()


def test_a_folder_with_working_locks_is_accepted(tmp_path, capsys):
    code, out = start(tmp_path, capsys)
    assert code == 0, out.err
    assert os.path.exists(tmp_path / "runs" / "shared" / ".db.json")
    assert [name for name in os.listdir(tmp_path / "runs" / "shared") if "probe" in name] == []


def flock_without_effect(file, operation):
    """A file system that accepts flock but keeps nobody out (the second process gets the lock too)."""


def flock_unsupported(file, operation):
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))


@pytest.mark.parametrize("fake_flock, problem", [
    (flock_without_effect, "does not give exclusive locks between processes: a second process took the flock lock"),
    (flock_unsupported, "does not support flock locks (No locks available)")])
def test_a_folder_without_exclusive_locks_is_refused_before_anything_is_queued(tmp_path, capsys, monkeypatch,
                                                                               fake_flock, problem):
    monkeypatch.setattr(lock.fcntl, "flock", fake_flock)
    code, out = start(tmp_path, capsys)
    assert code == 1 and problem in out.err and str(tmp_path / "runs" / "shared") in out.err
    assert "put --root on a file system whose flock excludes processes and machines" in out.err
    assert out.err.count("\n") == 1 and "Traceback" not in out.err
    assert not os.path.exists(tmp_path / "runs" / "shared" / ".db.json")
