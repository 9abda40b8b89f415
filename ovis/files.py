"""Atomic file writes: the one definition used for checkpoints, records, caches and the queue
database.

``atomic_open(path)`` writes to a temporary file in the same folder, flushes and ``fsync``s it,
renames it over ``path`` (``os.replace``: atomic on POSIX) and ``fsync``s the folder so that the
rename itself survives a power cut. A reader sees the old or the new file, never a torn one; a
failed or killed write leaves ``path`` as it was. The temporary file is removed on any failure;
files left by a killed writer are named ``<name>.<random>.tmp`` and ``remove_stale_temporaries``
clears them.
"""
import contextlib
import errno
import glob
import os
import tempfile
from typing import IO, Iterator, Union

TMP_SUFFIX = ".tmp"


def fsync_folder(folder: str) -> None:
    """Make a rename or creation in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as error:  # some file systems refuse fsync on folders
        if error.errno not in (errno.EINVAL, errno.EBADF, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(path: str, mode: str = "w", encoding: str = None) -> Iterator[IO]:
    """Context manager yielding a file object; ``path`` is replaced only when the block ends
    without an exception. ``mode``: ``"w"`` (text) or ``"wb"`` (binary)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open mode={mode!r}: allowed 'w' (text) or 'wb' (binary)")
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=TMP_SUFFIX, dir=folder)
    try:
        with os.fdopen(fd, mode, encoding=encoding if mode == "w" else None) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(path):  # keep the permissions of the file being replaced
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_folder(folder)


def atomic_write(path: str, content: Union[str, bytes]) -> None:
    """Replace ``path`` by ``content`` (``str``: UTF-8 text, ``bytes``: binary), atomically."""
    binary = isinstance(content, (bytes, bytearray))
    with atomic_open(path, "wb" if binary else "w", encoding=None if binary else "utf-8") as f:
        f.write(content)


def remove_stale_temporaries(path: str) -> int:
    """Remove the temporary files that killed writers of ``path`` left behind; returns how many."""
    removed = 0
    for tmp in glob.glob(glob.escape(path) + ".*" + TMP_SUFFIX):
        with contextlib.suppress(OSError):
            os.remove(tmp)
            removed += 1
    return removed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
