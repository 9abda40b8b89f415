"""Where data files are found, where converted caches go, and the optional download.

* Data roots, searched in order: the ``data_root`` argument (``--data_root``), ``$OVIS_DATA``,
  ``./data``.
* Caches (converted ``.npz``) and downloads go to the user cache folder: ``$OVIS_CACHE``, else
  ``$XDG_CACHE_HOME/ovis``, else ``~/.cache/ovis`` (the XDG rule platformdirs follows on Linux);
  never into a data folder, which may be read-only or shared. A cache is named after its
  sources' folder and records a signature of its sources (name, size, modification time, format
  version); it is rebuilt when they change.
* Downloads (only when no local file exists): disabled by ``OVIS_NO_DOWNLOAD=1``; short
  time-outs; a failed one is named in the missing-data message.
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


class MissingDataError(FileNotFoundError):
    """A data set's files are nowhere to be found (message says which, where, how to get them)."""


def data_roots(data_root: Optional[str] = None) -> List[str]:
    """The folders searched for data files, in order: ``data_root``, ``$OVIS_DATA``, ``./data``."""
    roots = [data_root, os.environ.get("OVIS_DATA"), "data"]
    return list(dict.fromkeys(os.path.abspath(os.path.expanduser(r)) for r in roots if r))


def user_cache_dir() -> str:
    """``$OVIS_CACHE``, else ``$XDG_CACHE_HOME/ovis``, else ``~/.cache/ovis``."""
    folder = os.environ.get("OVIS_CACHE") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "ovis")
    return os.path.abspath(os.path.expanduser(folder))


def cache_path(source_dir: str, file_name: str) -> str:
    """Cache file for sources in ``source_dir``: in the user cache folder, with a tag of
    ``source_dir`` in the name (sources in other folders get their own cache)."""
    stem, extension = os.path.splitext(file_name)
    tag = hashlib.sha1(os.path.abspath(source_dir).encode()).hexdigest()[:10]
    return os.path.join(user_cache_dir(), f"{stem}-{tag}{extension}")


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


# url -> why its download failed, in this process (named by ``missing``)
FAILED_DOWNLOADS: Dict[str, str] = {}


def download(url: str, relative_path: str) -> Optional[str]:
    """Fetch ``url`` to ``<user cache folder>/relative_path``; ``None`` on failure (recorded in
    ``FAILED_DOWNLOADS``) or when downloads are disabled."""
    if not downloads_enabled():
        return None
    destination = os.path.join(user_cache_dir(), relative_path)
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
            with atomic_open(destination, "wb") as f:
                shutil.copyfileobj(response, f)
        return destination
    except (OSError, ValueError) as error:
        FAILED_DOWNLOADS[url] = str(getattr(error, "reason", None) or error)
        return None


def missing(dataset: str, wanted: str, roots: Sequence[str], how_to_get: str, urls: Sequence[str] = ()) -> MissingDataError:
    """The error for a data set found nowhere: what was wanted, every folder searched, the
    downloads tried (or that they are disabled) and how to get the files."""
    searched = "\n".join(f"  - {r}" for r in roots)
    if not downloads_enabled():
        downloads = "Downloads are disabled (OVIS_NO_DOWNLOAD)."
    else:
        failed = [f"{url} ({FAILED_DOWNLOADS[url]})" for url in urls if url in FAILED_DOWNLOADS]
        downloads = f"Download failed: {'; '.join(failed)}." if failed else ""
    ovis_data = os.environ.get("OVIS_DATA")
    where = (f"Put the files in one of these folders (OVIS_DATA={ovis_data} was searched), or pass --data_root / "
             f"data_root= with the folder that holds them." if ovis_data else
             "Pass --data_root / data_root= or set OVIS_DATA to the folder that holds them.")
    return MissingDataError(f"data set {dataset!r}: {wanted} not found. Folders searched:\n{searched}\n"
                            f"{downloads + ' ' if downloads else ''}{where} {how_to_get}")
