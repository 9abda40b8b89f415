"""Where data files are found, where converted caches go, and the optional download.

* Data roots: the ``data_root`` argument, else ``$OVIS_DATA`` then ``./data``.
* Caches (converted ``.npz``): beside the source file when its folder is writable, else
  ``$OVIS_CACHE``, else ``~/.cache/ovis``. A cache records a signature of its sources (name,
  size, modification time, format version) and is rebuilt when they change.
* Downloads (only when no local file exists): disabled by ``OVIS_NO_DOWNLOAD=1``; short
  time-outs; the file lands in the first writable data root, else the cache folder.
"""
import hashlib
import json
import os
import shutil
import urllib.request
import zipfile
from typing import Dict, Iterable, List, Optional, Sequence

import numpy as np

from ovis.files import atomic_open

from .readers import read_npz

DOWNLOAD_TIMEOUT_S = 15
SYSTEM_PREFIXES = ("/usr/", "/opt/", "/etc/", "/var/lib/")


class MissingDataError(FileNotFoundError):
    """A data set's files are nowhere to be found (message says which, where, how to get them)."""


def data_roots(data_root: Optional[str] = None) -> List[str]:
    """The folders searched for data files, in order."""
    if data_root is not None:
        return [os.path.abspath(os.path.expanduser(data_root))]
    roots = [os.environ.get("OVIS_DATA"), "data"]
    return list(dict.fromkeys(os.path.abspath(os.path.expanduser(r)) for r in roots if r))


def user_cache_dir() -> str:
    return os.path.abspath(os.path.expanduser(os.environ.get("OVIS_CACHE") or "~/.cache/ovis"))


def is_writable_dir(folder: str) -> bool:
    """Whether caches may be written into ``folder``: it must be writable, have a write
    permission bit (root ignores permission bits, a read-only share must still stay untouched)
    and not be a system folder (e.g. Debian's ``/usr/share/datasets``)."""
    folder = os.path.abspath(folder)
    if not os.path.isdir(folder) or folder.startswith(SYSTEM_PREFIXES):
        return False
    return os.access(folder, os.W_OK) and bool(os.stat(folder).st_mode & 0o222)


def cache_dir_for(source_dir: str) -> str:
    """``source_dir`` when writable, else the user cache folder (created)."""
    if is_writable_dir(source_dir):
        return os.path.abspath(source_dir)
    folder = user_cache_dir()
    os.makedirs(folder, exist_ok=True)
    return folder


def cache_path(source_dir: str, file_name: str) -> str:
    """Cache file for sources in ``source_dir``: beside them when writable, else in the user
    cache folder with a tag of ``source_dir`` in the name (sources elsewhere get their own)."""
    folder = cache_dir_for(source_dir)
    if folder == os.path.abspath(source_dir):
        return os.path.join(folder, file_name)
    stem, extension = os.path.splitext(file_name)
    tag = hashlib.sha1(os.path.abspath(source_dir).encode()).hexdigest()[:10]
    return os.path.join(folder, f"{stem}-{tag}{extension}")


def find_first(roots: Sequence[str], relative_paths: Iterable[str]) -> Optional[str]:
    """First existing ``root/relative`` over roots (outer loop) and paths (inner loop)."""
    relative_paths = list(relative_paths)
    for root in roots:
        for relative in relative_paths:
            path = os.path.join(root, relative)
            if os.path.isfile(path):
                return path
    return None


def signature(paths: Sequence[str], version: str) -> str:
    """Identity of a cache's sources: names, sizes, modification times and format version."""
    stats = [(os.path.basename(p), os.path.getsize(p), os.stat(p).st_mtime_ns) for p in paths]
    return json.dumps({"version": version, "sources": stats})


def load_cache(path: str, expected_signature: str) -> Optional[Dict[str, np.ndarray]]:
    """Arrays of a cache ``.npz`` if it exists and matches ``expected_signature``."""
    if not os.path.isfile(path):
        return None
    try:
        arrays = read_npz(path)
    except (OSError, ValueError, zipfile.BadZipFile):  # torn or foreign file: rebuild it
        return None
    if "signature" not in arrays or str(arrays.pop("signature")) != expected_signature:
        return None
    return arrays


def save_cache(path: str, arrays: Dict[str, np.ndarray], cache_signature: str) -> None:
    """Write an uncompressed ``.npz`` atomically (concurrent runs may build the same cache)."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    with atomic_open(path, "wb") as f:
        np.savez(f, signature=np.array(cache_signature), **arrays)


def downloads_enabled() -> bool:
    return os.environ.get("OVIS_NO_DOWNLOAD", "").strip().lower() not in ("1", "true", "yes")


def download(url: str, roots: Sequence[str], relative_path: str) -> Optional[str]:
    """Fetch ``url`` to ``<first writable root or cache>/relative_path``; ``None`` on failure
    or when downloads are disabled."""
    if not downloads_enabled():
        return None
    writable = [r for r in roots if is_writable_dir(r)]
    destination = os.path.join(writable[0] if writable else user_cache_dir(), relative_path)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            with atomic_open(destination, "wb") as f:
                shutil.copyfileobj(response, f)
        return destination
    except (OSError, ValueError):
        return None


def missing(dataset: str, wanted: str, roots: Sequence[str], how_to_get: str) -> MissingDataError:
    searched = "\n".join(f"  - {r}" for r in roots)
    note = "" if downloads_enabled() else " (downloads disabled by OVIS_NO_DOWNLOAD)"
    return MissingDataError(
        f"data set {dataset!r}: {wanted} not found{note}. Folders searched:\n{searched}\n"
        f"Pass --data_root / data_root= or set OVIS_DATA to the folder that holds it. {how_to_get}")
