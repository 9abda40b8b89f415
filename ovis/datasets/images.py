"""Image data sets read from files: binarized MNIST, Fashion-MNIST, Omniglot.

Each loader returns ``(train, valid, test)`` splits of images ``[n, 1, 28, 28]``: binary ones
bit-packed (``BinaryDataset``), grey levels for dynamic binarisation as ``uint8``
(``ArrayDataset``). Converted arrays are cached in ``.npz`` files (``sources``).

``binarization`` (Fashion-MNIST, Omniglot): ``static`` thresholds grey levels at 1/2 (x >= 0.5);
``dynamic`` draws x ~ Bernoulli(grey level) afresh for every training batch, while the valid
and test images are binarised once with fixed seeds (42, 43) so that evaluations are comparable.

Validation splits (the original code validated on the test set; these are held out instead):

* ``binmnist``: the standard 50,000 / 10,000 / 10,000 split of Larochelle & Murray.
* ``fashion``: train = the first 50,000 official training images, valid = the last 10,000,
  test = the official 10,000.
* ``omniglot`` from Burda et al.'s ``chardata.mat``: test = its 8,070 test images; valid = 1,345
  training images chosen by a fixed permutation (numpy seed 0); train = the other 23,000.
* ``omniglot`` built from Lake et al.'s zips (``images_*.zip``, e.g. the two "background small"
  sets: 4,840 distinct images after dropping duplicate file names): split by drawer (each
  character is drawn by 20 people, file ``<id>_<drawer>.png``): train = drawers 1-14, valid =
  drawer 15, test = drawers 16-20. Every character is in every split, as in Burda et al.'s
  75 / 25 split by drawer. Images are 105x105 PNGs downsampled to 28x28 by area averaging
  (antialiased), inverted so that ink is 1, kept as grey levels.
"""
import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import torch

from . import sources
from .readers import read_amat, read_chardata_mat, read_idx, read_npz, read_omniglot_zips
from .splits import ArrayDataset, BinaryDataset

BINARIZATIONS = ("static", "dynamic")
HELD_OUT_BINARIZATION_SEEDS = {"valid": 42, "test": 43}
IMAGE_SHAPE = (1, 28, 28)

BINMNIST_NPZ = "binarized_mnist.npz"
BINMNIST_SPLITS = ("train", "valid", "test")
BINMNIST_FOLDERS = ("", "bin-mnist", "binarized_mnist")
BINMNIST_URL = "http://www.cs.toronto.edu/~larocheh/public/datasets/binarized_mnist/binarized_mnist_{}.amat"

FASHION_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
FASHION_FOLDERS = ("", "fashion-mnist", "fashion", "FashionMNIST/raw", "fashion_mnist")
FASHION_DEBIAN_FOLDER = "/usr/share/datasets/fashion-mnist"  # apt-get install dataset-fashion-mnist
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/{}.gz"
FASHION_VALID_SIZE = 10_000

OMNIGLOT_FOLDERS = ("omniglot", "OMNIGLOT", "")
CHARDATA_URL = "https://raw.githubusercontent.com/yburda/iwae/master/datasets/OMNIGLOT/chardata.mat"
CHARDATA_VALID_SIZE = 1_345
OMNIGLOT_DRAWERS = {"train": range(1, 15), "valid": range(15, 16), "test": range(16, 21)}

CACHE_VERSION = "ovis-datasets-1"


def _grey_images(values: np.ndarray) -> torch.Tensor:
    """``uint8 [n, 28 * 28]`` or ``[n, 28, 28]`` grey levels -> tensor ``[n, 1, 28, 28]``."""
    return torch.from_numpy(np.ascontiguousarray(values, dtype=np.uint8).reshape(-1, *IMAGE_SHAPE))


def _binary_images(values: np.ndarray) -> BinaryDataset:
    """0/1 images ``[n, 28 * 28]`` or ``[n, 28, 28]`` -> bit-packed split."""
    return BinaryDataset.from_values(values.reshape(-1, *IMAGE_SHAPE))


def binarize_once(grey: np.ndarray, seed: int) -> np.ndarray:
    """One fixed draw x ~ Bernoulli(grey / 255), ``uint8`` 0/1 of the same shape."""
    uniforms = np.random.default_rng(seed).random(grey.shape, dtype=np.float32)
    return (uniforms * 255 < grey).astype(np.uint8)


def grey_splits(train: np.ndarray, valid: np.ndarray, test: np.ndarray, binarization: str) -> Tuple:
    """Splits of grey-level images (``uint8`` 0..255) binarised as ``binarization`` says
    (``static`` overwrites the arrays in place: no second copy of the data set in memory)."""
    if binarization == "static":
        for split in (train, valid, test):
            np.greater_equal(split, 128, out=split.view(np.bool_))
        return tuple(_binary_images(split) for split in (train, valid, test))
    held_out = [binarize_once(split, HELD_OUT_BINARIZATION_SEEDS[name])
                for name, split in (("valid", valid), ("test", test))]
    return (ArrayDataset(_grey_images(train), scale=255, dynamic=True), *(_binary_images(s) for s in held_out))


def _with_cache(roots: Sequence[str]) -> List[str]:
    """The data roots then the user cache folder (where downloads land)."""
    return list(dict.fromkeys(list(roots) + [sources.user_cache_dir()]))


def _cached(cache_name: str, paths: Sequence[str], build):
    """Arrays converted from ``paths`` by ``build()``, read from / written to a cache ``.npz``."""
    cache = sources.cache_path(os.path.dirname(paths[0]), cache_name)
    key = sources.signature(paths, CACHE_VERSION)
    arrays = sources.load_cache(cache, key)
    if arrays is None:
        arrays = build()
        sources.save_cache(cache, arrays, key)
    return arrays


# --- binarized MNIST ---------------------------------------------------------------------------
def load_binmnist(roots: Sequence[str], binarization: Optional[str] = None):
    """Larochelle & Murray's static binarisation: from the first root holding
    ``binarized_mnist.npz`` (keys ``train``, ``valid``, ``test``, ``uint8 [n, 784]``) or the three
    ``binarized_mnist_*.amat`` files, else a download of the ``.amat`` files; bit-packed once into
    a cache."""
    if binarization not in (None, "static"):
        raise ValueError(f"binmnist is a fixed (static) binarisation; binarization={binarization!r} "
                         f"is not available (use fashion or omniglot for dynamic binarisation)")
    paths = _find_binmnist(roots)

    def build() -> dict:
        arrays = read_npz(paths[0]) if len(paths) == 1 else dict(zip(BINMNIST_SPLITS, map(read_amat, paths)))
        return _pack_binmnist(arrays, paths[0])
    bits = _cached("binarized_mnist-bits.npz", paths, build)
    return tuple(BinaryDataset(bits[split], IMAGE_SHAPE) for split in BINMNIST_SPLITS)


def _pack_binmnist(arrays: dict, where: str) -> dict:
    missing_keys = set(BINMNIST_SPLITS) - set(arrays)
    if missing_keys:
        raise ValueError(f"{where}: missing arrays {sorted(missing_keys)} (expected train, valid, test)")
    bits = {}
    for split in BINMNIST_SPLITS:
        values = arrays.pop(split)
        if values.ndim != 2 or values.shape[1] != 784 or values.max() > 1:
            raise ValueError(f"{where}: {split!r} must be a binary array of shape [n, 784], got {values.shape}")
        bits[split] = np.packbits(values, axis=1)  # [n, 98]
    return bits


def _find_binmnist(roots: Sequence[str]) -> List[str]:
    """``[npz]`` or the train, valid and test ``.amat`` files of the first root (then the cache
    folder) that holds them, else the downloaded ``.amat`` files."""
    names = [f"binarized_mnist_{split}.amat" for split in BINMNIST_SPLITS]
    for root in _with_cache(roots):
        npz = sources.find_first([root], [os.path.join(f, BINMNIST_NPZ) for f in BINMNIST_FOLDERS])
        amat = [sources.find_first([root], [os.path.join(f, name) for f in BINMNIST_FOLDERS]) for name in names]
        if npz or all(amat):
            return [npz] if npz else amat
    downloaded = [sources.download(BINMNIST_URL.format(split), os.path.join("bin-mnist", name))
                  for split, name in zip(BINMNIST_SPLITS, names)]
    if all(downloaded):
        return downloaded
    raise sources.missing(
        "binmnist", f"{BINMNIST_NPZ} (or binarized_mnist_{{train,valid,test}}.amat)", _with_cache(roots),
        f"Get the .amat files from {BINMNIST_URL.format('{train,valid,test}')}.",
        [BINMNIST_URL.format(split) for split in BINMNIST_SPLITS])


# --- Fashion-MNIST -----------------------------------------------------------------------------
def _find_fashion(folders: Sequence[str]) -> Optional[List[str]]:
    """``[train, test]`` IDX image files from the first folder holding both (``.gz`` or not)."""
    for folder in folders:
        paths = [sources.find_first([folder], [name, name + ".gz"]) for name in FASHION_FILES.values()]
        if all(paths):
            return paths
    return None


def load_fashion(roots: Sequence[str], binarization: Optional[str] = None):
    """Fashion-MNIST from its IDX files (data roots, then Debian's ``dataset-fashion-mnist``
    folder, then a download); converted once to a ``fashion-mnist.npz`` cache."""
    binarization = binarization or "static"
    folders = [os.path.join(r, f) for r in _with_cache(roots) for f in FASHION_FOLDERS] + [FASHION_DEBIAN_FOLDER]
    paths = _find_fashion(folders)
    if paths is None:
        downloaded = [sources.download(FASHION_URL.format(name), os.path.join("fashion-mnist", name + ".gz"))
                      for name in FASHION_FILES.values()]
        paths = downloaded if all(downloaded) else None
    if paths is None:
        raise sources.missing(
            "fashion", "train-images-idx3-ubyte[.gz] and t10k-images-idx3-ubyte[.gz]",
            folders, "Install Debian's package dataset-fashion-mnist (apt-get install dataset-fashion-mnist) "
                     f"or get the files from {FASHION_URL.format('<name>')}.",
            [FASHION_URL.format(name) for name in FASHION_FILES.values()])
    arrays = _cached("fashion-mnist.npz", paths,
                     lambda: {split: read_idx(path) for split, path in zip(FASHION_FILES, paths)})
    train = arrays["train"]
    return grey_splits(train[:-FASHION_VALID_SIZE], train[-FASHION_VALID_SIZE:], arrays["test"], binarization)


# --- Omniglot ----------------------------------------------------------------------------------
def load_omniglot(roots: Sequence[str], binarization: Optional[str] = None):
    """Omniglot 28x28: Burda et al.'s ``chardata.mat`` when present, else built from Lake et al.'s
    ``images_*.zip`` in the data root, else a download of ``chardata.mat``. Both are converted
    once to a cache ``.npz``."""
    binarization = binarization or "dynamic"
    chardata = sources.find_first(_with_cache(roots), [os.path.join(f, "chardata.mat") for f in OMNIGLOT_FOLDERS])
    zips = [] if chardata else _find_omniglot_zips(_with_cache(roots))
    if not chardata and not zips:
        chardata = sources.download(CHARDATA_URL, os.path.join("omniglot", "chardata.mat"))
    if chardata:
        return grey_splits(*_chardata_splits(chardata), binarization)
    if zips:
        return grey_splits(*_zip_splits(zips), binarization)
    raise sources.missing(
        "omniglot", "chardata.mat (Burda et al.) or Omniglot images_*.zip files",
        [os.path.join(r, f) for r in _with_cache(roots) for f in OMNIGLOT_FOLDERS],
        f"Get chardata.mat from {CHARDATA_URL}, or the PNG zips (e.g. images_background_small1.zip, "
        "images_background_small2.zip) from https://github.com/brendenlake/omniglot (python/ folder) "
        "into <data_root>/omniglot/.", [CHARDATA_URL])


def _find_omniglot_zips(roots: Sequence[str]) -> List[str]:
    for root in roots:
        for folder in OMNIGLOT_FOLDERS:
            path = os.path.join(root, folder)
            if os.path.isdir(path):
                zips = sorted(os.path.join(path, f) for f in os.listdir(path)
                              if f.startswith("images_") and f.endswith(".zip"))
                if zips:
                    return zips
    return []


def _chardata_splits(path: str):
    def build():
        train, test = read_chardata_mat(path)
        return {"train": train, "test": test}

    arrays = _cached("omniglot-chardata.npz", [path], build)
    train = arrays["train"]
    permutation = np.random.default_rng(0).permutation(len(train))
    valid_index = np.sort(permutation[:CHARDATA_VALID_SIZE])
    train_index = np.sort(permutation[CHARDATA_VALID_SIZE:])
    return train[train_index], train[valid_index], arrays["test"]


def _zip_splits(paths: Sequence[str]):
    def build():
        content = read_omniglot_zips(paths)
        return {"images": content["images"], "drawer": content["drawer"]}

    arrays = _cached("omniglot-zips-28x28.npz", paths, build)
    images, drawer = arrays["images"], arrays["drawer"]
    return tuple(images[np.isin(drawer, list(OMNIGLOT_DRAWERS[split]))] for split in ("train", "valid", "test"))
