"""Readers of the raw file formats (numpy in, numpy out; no torchvision).

* NumPy ``.npz`` archives, read without a transient second copy: ``read_npz``.
* IDX (MNIST / Fashion-MNIST), optionally gzipped: ``read_idx``.
* Larochelle's binarized-MNIST ``.amat`` text files: ``read_amat``.
* Burda et al.'s Omniglot ``chardata.mat``: ``read_chardata_mat``.
* Lake et al.'s Omniglot zips of 105x105 PNGs: ``read_omniglot_zips``.
"""
import gzip
import io
import os
import zipfile
from typing import Dict, List, Sequence, Tuple

import numpy as np

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


NPZ_BLOCK_BYTES = 1 << 22


def _read_npy_member(stream, name: str) -> np.ndarray:
    """One ``.npy`` member of an archive straight into its final C-ordered array."""
    version = np.lib.format.read_magic(stream)
    read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0}.get(version)
    if read_header is None:
        raise ValueError(f"{name}: unsupported .npy format version {version}")
    shape, fortran_order, dtype = read_header(stream)
    if dtype.hasobject:
        raise ValueError(f"{name}: object arrays (pickles) are not read, for safety")
    out = np.empty(shape, dtype=dtype)
    if out.size == 0:
        return out
    if not fortran_order or out.ndim < 2:
        if stream.readinto(memoryview(out.reshape(-1)).cast("B")) != out.nbytes:
            raise ValueError(f"{name}: truncated array data")
        return out
    # Fortran order = C order of the reversed shape: read blocks along its slowest axis (out's
    # last axis) and transpose each block into place.
    slab = np.empty(shape[::-1][1:], dtype=dtype)  # one index of out's last axis
    step = max(1, NPZ_BLOCK_BYTES // max(1, slab.nbytes))
    for start in range(0, shape[-1], step):
        count = min(step, shape[-1] - start)
        block = np.empty((count, *slab.shape), dtype=dtype)
        if stream.readinto(memoryview(block.reshape(-1)).cast("B")) != block.nbytes:
            raise ValueError(f"{name}: truncated array data")
        out[..., start:start + count] = block.transpose()
    return out


def read_npz(path: str) -> Dict[str, np.ndarray]:
    """All arrays of a ``.npz`` (compressed or not) as C-ordered arrays. ``np.load`` holds a
    second copy of each array while decompressing; this reads each one in place, so loading
    50,000 MNIST images peaks at the size of the data."""
    arrays = {}
    with zipfile.ZipFile(path) as archive:
        for member in archive.namelist():
            if member.endswith(".npy"):
                with archive.open(member) as stream:
                    arrays[member[:-4]] = _read_npy_member(stream, f"{path}:{member}")
    return arrays


def _open_maybe_gzip(path: str):
    with open(path, "rb") as f:
        gzipped = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else open(path, "rb")


def read_idx(path: str) -> np.ndarray:
    """IDX file (LeCun's MNIST format; gzip detected from the content) -> array of its shape."""
    with _open_maybe_gzip(path) as f:
        content = f.read()
    if len(content) < 4 or content[0] != 0 or content[1] != 0 or content[2] not in IDX_DTYPES:
        raise ValueError(f"{path}: not an IDX file (bad magic number {content[:4]!r})")
    dtype, ndim = np.dtype(IDX_DTYPES[content[2]]), content[3]
    shape = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    offset = 4 + 4 * ndim
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(content) - offset != expected:
        raise ValueError(f"{path}: IDX header announces shape {shape} ({expected} bytes of data), "
                         f"file holds {len(content) - offset}")
    return np.frombuffer(content, dtype=dtype, offset=offset).reshape(shape).astype(dtype.newbyteorder("="))


def read_amat(path: str, n_features: int = 784) -> np.ndarray:
    """Larochelle's ``binarized_mnist_*.amat`` (one image per line, 0/1 separated by spaces)
    -> ``uint8 [n, n_features]``."""
    with open(path, "rb") as f:
        raw = f.read()
    content = np.frombuffer(raw, dtype=np.uint8)
    digits = content[(content == ord("0")) | (content == ord("1"))] - ord("0")
    n_lines = sum(1 for line in raw.splitlines() if line.strip())
    if digits.size != n_lines * n_features:
        raise ValueError(f"{path}: expected {n_features} binary values on each of {n_lines} lines, "
                         f"found {digits.size} values")
    return digits.reshape(n_lines, n_features)


def to_grey_levels(values: np.ndarray) -> np.ndarray:
    """Floats in [0, 1] -> ``uint8`` grey levels 0..255 (rounded)."""
    return np.clip(np.rint(np.asarray(values, dtype=np.float64) * 255), 0, 255).astype(np.uint8)


def read_chardata_mat(path: str) -> Tuple[np.ndarray, np.ndarray]:
    """Burda et al.'s ``chardata.mat`` -> ``(train, test)`` ``uint8 [n, 28, 28]`` grey levels.

    The file stores ``data`` / ``testdata`` as float ``[784, n]`` with each image in column-major
    (Fortran) order; reading them that way gives upright characters.
    """
    from scipy.io import loadmat

    content = loadmat(path)
    for key in ("data", "testdata"):
        if key not in content or content[key].shape[0] != 784:
            raise ValueError(f"{path}: expected a float array {key!r} of shape [784, n]")
    return tuple(to_grey_levels(content[key].T.reshape(-1, 28, 28, order="F"))
                 for key in ("data", "testdata"))


def _png_to_ink(png: bytes, size: int) -> np.ndarray:
    """Black-on-white PNG -> ``uint8 [size, size]`` ink density (area-averaged downsampling)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        ink = 255 - np.asarray(image.convert("L"), dtype=np.uint8)
    return np.asarray(Image.fromarray(ink).resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def read_omniglot_zips(paths: Sequence[str], size: int = 28) -> Dict[str, np.ndarray]:
    """Images of Lake et al.'s Omniglot zips (``<set>/<alphabet>/<character>/<id>_<drawer>.png``).

    Files present in several zips (same file name) are kept once. Returns, sorted by
    (alphabet, character, file name): ``images uint8 [n, size, size]`` (ink = 255, grey levels
    from the 105 -> ``size`` area-averaging), ``drawer int [n]`` (1..20), ``alphabet`` and
    ``character`` (``<alphabet>/<character>`` strings) ``[n]``.
    """
    entries: Dict[str, Tuple[str, str, str]] = {}
    for path in paths:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                parts = name.split("/")
                if not name.lower().endswith(".png") or len(parts) < 3:
                    continue
                entries.setdefault(parts[-1], (path, name, parts[-3] + "/" + parts[-2]))
    if not entries:
        raise ValueError(f"no Omniglot PNG found in {list(paths)}")
    order = sorted(entries, key=lambda f: (entries[f][2], f))
    images: List[np.ndarray] = []
    archives = {path: zipfile.ZipFile(path) for path in paths}
    try:
        for file_name in order:
            path, name, _ = entries[file_name]
            images.append(_png_to_ink(archives[path].read(name), size))
    finally:
        for archive in archives.values():
            archive.close()
    drawers = [int(os.path.splitext(f)[0].rsplit("_", 1)[-1]) for f in order]
    characters = [entries[f][2] for f in order]
    return {"images": np.stack(images), "drawer": np.asarray(drawers, dtype=np.int64),
            "alphabet": np.asarray([c.split("/")[0] for c in characters]),
            "character": np.asarray(characters)}
