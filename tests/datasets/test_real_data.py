"""The real files, when present: ``$OVIS_DATA`` (CI: ../shared/data) and Debian's Fashion-MNIST.

Each test runs only where its files exist; the same loaders are covered on generated files by
``test_loaders.py``.
"""
import os
import subprocess
import sys
import time

import pytest
import torch

from ovis.datasets import get_datasets, images

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATA = os.path.abspath(os.environ["OVIS_DATA"]) if os.environ.get("OVIS_DATA") else ""
HAS_BINMNIST = bool(DATA) and os.path.isfile(os.path.join(DATA, "binarized_mnist.npz"))
HAS_OMNIGLOT_ZIPS = bool(DATA) and os.path.isfile(os.path.join(DATA, "omniglot", "images_background_small1.zip"))
HAS_FASHION = os.path.isfile(os.path.join(images.FASHION_DEBIAN_FOLDER, "train-images-idx3-ubyte.gz"))


def check_binary_split(split, n, mean_range):
    assert len(split) == n
    x = split.batch(torch.randperm(n, generator=torch.Generator().manual_seed(0))[:500])
    assert x.dtype == torch.float32 and x.shape == (500, 1, 28, 28)
    assert set(x.unique().tolist()) == {0.0, 1.0}
    assert mean_range[0] < x.mean() < mean_range[1]


@pytest.mark.skipif(not HAS_BINMNIST, reason="binarized_mnist.npz not in $OVIS_DATA")
def test_real_binmnist():
    datasets = get_datasets("binmnist", data_root=DATA)
    for split, n in (("train", 50_000), ("valid", 10_000), ("test", 10_000)):
        check_binary_split(getattr(datasets, split), n, (0.12, 0.14))
    assert abs(datasets.train.mean().mean() - 0.1306) < 1e-3
    start = time.perf_counter()
    get_datasets("binmnist", data_root=DATA)  # from the cache
    assert time.perf_counter() - start < 2.0


@pytest.mark.skipif(not HAS_BINMNIST, reason="binarized_mnist.npz not in $OVIS_DATA")
def test_real_binmnist_memory():
    """Loading 70,000 images and drawing batches costs well under the 300 MB run budget."""
    get_datasets("binmnist", data_root=DATA)  # builds the cache ($OVIS_CACHE of this test)
    code = ("import resource, torch\n"
            "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
            "from ovis.datasets import get_datasets\n"
            f"d = get_datasets('binmnist', data_root={DATA!r})\n"
            "d.train.mean(); [d.train.batch(torch.randint(0, 50000, (24,))) for _ in range(100)]\n"
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=REPO_ROOT)
    assert float(result.stdout.strip()) < 40  # MB above the interpreter + torch


@pytest.mark.skipif(not HAS_OMNIGLOT_ZIPS, reason="Omniglot zips not in $OVIS_DATA/omniglot")
def test_real_omniglot_from_the_small_background_sets():
    datasets = get_datasets("omniglot", data_root=DATA)
    assert (len(datasets.train), len(datasets.valid), len(datasets.test)) == (3388, 242, 1210)  # 4,840 images
    x = datasets.train.batch(torch.arange(0, 3388, 7), generator=torch.Generator().manual_seed(0))
    assert set(x.unique().tolist()) == {0.0, 1.0} and 0.03 < x.mean() < 0.2
    check_binary_split(datasets.test, 1210, (0.03, 0.2))


@pytest.mark.skipif(not HAS_FASHION, reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion():
    datasets = get_datasets("fashion", data_root=DATA or None)
    for split, n in (("train", 50_000), ("valid", 10_000), ("test", 10_000)):
        check_binary_split(getattr(datasets, split), n, (0.25, 0.4))
