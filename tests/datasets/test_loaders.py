"""get_datasets on small files written in the real formats (no real data needed)."""

import os

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ovis.datasets import BinaryDataset, MissingDataError, get_datasets, images, sources

from .writers import stroke, write_amat, write_chardata, write_idx, write_omniglot_zip

RNG = np.random.default_rng(1)
BINMNIST = {split: RNG.integers(0, 2, (n, 784)).astype(np.uint8) for split, n in (("train", 12), ("valid", 5), ("test", 6))}


@pytest.fixture
def no_debian_fashion(monkeypatch, tmp_path):
    monkeypatch.setattr(images, "FASHION_DEBIAN_FOLDER", str(tmp_path / "no-such-folder"))


def all_points(split):
    return split.batch(torch.arange(len(split)))


def cached(stem):
    """The cache files named ``stem-<tag>.npz`` in the user cache folder ($OVIS_CACHE of the test)."""
    folder = sources.user_cache_dir()
    return [name for name in os.listdir(folder) if name.startswith(stem + "-")] if os.path.isdir(folder) else []


# --- binarized MNIST ---------------------------------------------------------------------------
def test_binmnist_from_npz(tmp_path):
    np.savez_compressed(tmp_path / "binarized_mnist.npz", **{k: np.asfortranarray(v) for k, v in BINMNIST.items()})
    datasets = get_datasets("binmnist", data_root=str(tmp_path))
    assert datasets.x_shape == (1, 28, 28) and datasets.name == "binmnist"
    for split in ("train", "valid", "test"):
        values = all_points(getattr(datasets, split))
        assert values.dtype == torch.float32 and values.shape == (len(BINMNIST[split]), 1, 28, 28)
        np.testing.assert_array_equal(values.view(len(values), -1).numpy(), BINMNIST[split])
    assert isinstance(datasets.train, BinaryDataset)
    torch.testing.assert_close(datasets.train[3], all_points(datasets.train)[3])
    torch.testing.assert_close(datasets.train.mean(), torch.tensor(BINMNIST["train"].mean(0), dtype=torch.float32).view(1, 28, 28))
    assert sorted(os.listdir(tmp_path)) == ["binarized_mnist.npz", "user-cache"]  # nothing written beside the data
    assert len(cached("binarized_mnist-bits")) == 1  # the bit-packed cache, in the user cache folder
    again = get_datasets("binmnist", data_root=str(tmp_path), binarization="static")
    torch.testing.assert_close(all_points(again.test), all_points(datasets.test))
    with pytest.raises(ValueError, match="fixed"):
        get_datasets("binmnist", data_root=str(tmp_path), binarization="dynamic")


def test_binmnist_from_amat_files(tmp_path):
    for split, values in BINMNIST.items():
        write_amat(str(tmp_path / "bin-mnist" / f"binarized_mnist_{split}.amat"), values)
    datasets = get_datasets("binmnist", data_root=str(tmp_path))
    np.testing.assert_array_equal(all_points(datasets.valid).view(5, -1).numpy(), BINMNIST["valid"])
    assert sorted(os.listdir(tmp_path / "bin-mnist")) == [f"binarized_mnist_{s}.amat" for s in ("test", "train", "valid")]
    assert len(cached("binarized_mnist-bits")) == 1  # converted once, into the user cache folder


def test_binmnist_missing_names_file_roots_and_source(tmp_path, monkeypatch):
    monkeypatch.setenv("OVIS_DATA", str(tmp_path / "env-root"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(MissingDataError) as error:
        get_datasets("binmnist")
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    for part in ("binarized_mnist.npz", str(tmp_path / "env-root"), str(tmp_path / "data"), "larocheh",
                 "OVIS_NO_DOWNLOAD", "OVIS_DATA"):
        assert part in message


def test_ovis_data_is_searched_after_data_root_and_named_as_searched(tmp_path, monkeypatch):
    (tmp_path / "env-root").mkdir()
    np.savez(tmp_path / "env-root" / "binarized_mnist.npz", **BINMNIST)
    monkeypatch.setenv("OVIS_DATA", str(tmp_path / "env-root"))
    assert len(get_datasets("binmnist", data_root=str(tmp_path / "nonexistent")).train) == 12
    monkeypatch.setenv("OVIS_DATA", str(tmp_path / "empty"))
    with pytest.raises(MissingDataError) as error:
        get_datasets("binmnist", data_root=str(tmp_path / "nonexistent"))
    message = str(error.value)
    assert f"OVIS_DATA={tmp_path / 'empty'} was searched" in message and "set OVIS_DATA" not in message
    assert message.index(str(tmp_path / "nonexistent")) < message.index(str(tmp_path / "empty"))


def test_missing_files_are_downloaded_into_the_user_cache_and_a_failure_is_named(tmp_path, monkeypatch):
    """Downloads enabled: the .amat files come from their address into the cache folder (the
    data folder stays untouched); a failed download is named with its reason."""
    import io
    import urllib.error
    import urllib.request
    monkeypatch.delenv("OVIS_NO_DOWNLOAD")
    monkeypatch.setenv("OVIS_DATA", str(tmp_path / "empty"))
    data = tmp_path / "data-root"
    data.mkdir()
    texts = {}
    for split, values in BINMNIST.items():
        write_amat(str(tmp_path / "served" / f"{split}.amat"), values)
        texts[images.BINMNIST_URL.format(split)] = (tmp_path / "served" / f"{split}.amat").read_bytes()
    fetched = []

    def offline(url, timeout):
        raise urllib.error.URLError("network unreachable")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(MissingDataError, match=r"Download failed: http\S+binarized_mnist_train.amat \(network unreachable\)"):
        get_datasets("binmnist", data_root=str(data))

    def served(url, timeout):
        fetched.append(url)
        return io.BytesIO(texts[url])
    monkeypatch.setattr(urllib.request, "urlopen", served)
    datasets = get_datasets("binmnist", data_root=str(data))
    np.testing.assert_array_equal(all_points(datasets.valid).view(5, -1).numpy(), BINMNIST["valid"])
    assert len(fetched) == 3 and os.listdir(data) == []
    assert sorted(os.listdir(os.path.join(sources.user_cache_dir(), "bin-mnist"))) == [
        f"binarized_mnist_{s}.amat" for s in ("test", "train", "valid")]


def test_default_root_is_ovis_data_then_local_data(tmp_path, monkeypatch):
    (tmp_path / "data").mkdir()
    np.savez(tmp_path / "data" / "binarized_mnist.npz", **BINMNIST)
    monkeypatch.setenv("OVIS_DATA", str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    assert len(get_datasets("binmnist").train) == 12


# --- Fashion-MNIST -----------------------------------------------------------------------------
def grey_images(n, seed):
    grey = np.random.default_rng(seed).integers(0, 256, (n, 28, 28)).astype(np.uint8)
    grey[0, 0, :2] = (127, 128)  # both sides of the 0.5 threshold
    return grey


@pytest.fixture
def fashion_root(tmp_path, monkeypatch, no_debian_fashion):
    monkeypatch.setattr(images, "FASHION_VALID_SIZE", 10)
    root = tmp_path / "root"
    write_idx(str(root / "fashion-mnist" / "train-images-idx3-ubyte.gz"), grey_images(30, 0), gz=True)
    write_idx(str(root / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"), grey_images(8, 1), gz=True)
    return root


def test_fashion_static_threshold_and_splits(fashion_root, monkeypatch):
    datasets = get_datasets("fashion", data_root=str(fashion_root))
    train_grey, test_grey = grey_images(30, 0), grey_images(8, 1)
    expected = {"train": train_grey[:20], "valid": train_grey[20:], "test": test_grey}
    for split, grey in expected.items():
        values = all_points(getattr(datasets, split))
        np.testing.assert_array_equal(values[:, 0].numpy(), (grey >= 128).astype(np.float32))
    assert all_points(datasets.train)[0, 0, 0, :2].tolist() == [0.0, 1.0]
    assert len(os.listdir(fashion_root / "fashion-mnist")) == 2 and len(cached("fashion-mnist")) == 1
    monkeypatch.setattr(images, "read_idx", None)  # the second load must come from the cache
    again = get_datasets("fashion", data_root=str(fashion_root))
    torch.testing.assert_close(all_points(again.valid), all_points(datasets.valid))


def test_fashion_dynamic_binarization(fashion_root):
    datasets = get_datasets("fashion", data_root=str(fashion_root), binarization="dynamic")
    train_grey = grey_images(30, 0)
    torch.testing.assert_close(datasets.train.mean(), torch.tensor(train_grey[:20].mean(0) / 255, dtype=torch.float32)[None])
    index = torch.zeros(4000, dtype=torch.long)  # the same image 4000 times
    draws = datasets.train.batch(index, generator=torch.Generator().manual_seed(0))
    assert set(draws.unique().tolist()) == {0.0, 1.0}
    p = torch.tensor(train_grey[0] / 255, dtype=torch.float32)
    assert ((draws.mean(0)[0] - p).abs() <= 5 * (p * (1 - p) / 4000).sqrt() + 1e-3).all()
    same = datasets.train.batch(index[:10], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, draws[:10])  # reproducible from the generator
    reloaded = get_datasets("fashion", data_root=str(fashion_root), binarization="dynamic")
    torch.testing.assert_close(all_points(reloaded.test), all_points(datasets.test))  # held-out sets fixed
    assert set(all_points(datasets.test).unique().tolist()) == {0.0, 1.0}


def test_fashion_plain_idx_in_the_debian_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "FASHION_VALID_SIZE", 10)
    folder = tmp_path / "debian"
    write_idx(str(folder / "train-images-idx3-ubyte"), grey_images(30, 0))
    write_idx(str(folder / "t10k-images-idx3-ubyte"), grey_images(8, 1))
    monkeypatch.setattr(images, "FASHION_DEBIAN_FOLDER", str(folder))
    datasets = get_datasets("fashion", data_root=str(tmp_path / "empty"))
    assert (len(datasets.train), len(datasets.valid), len(datasets.test)) == (20, 10, 8)


def test_fashion_missing(tmp_path, no_debian_fashion):
    with pytest.raises(MissingDataError, match="(?s)train-images-idx3-ubyte.*dataset-fashion-mnist"):
        get_datasets("fashion", data_root=str(tmp_path))


# --- Omniglot ----------------------------------------------------------------------------------
def test_omniglot_from_chardata(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "CHARDATA_VALID_SIZE", 5)
    rng = np.random.default_rng(2)
    train, test = rng.random((20, 28, 28)), rng.random((6, 28, 28))
    train[:, :, :3] = 0  # left margin empty: detects a transposition
    write_chardata(str(tmp_path / "omniglot" / "chardata.mat"), train, test)
    datasets = get_datasets("omniglot", data_root=str(tmp_path), binarization="static")
    assert (len(datasets.train), len(datasets.valid), len(datasets.test)) == (15, 5, 6)
    np.testing.assert_array_equal(all_points(datasets.test)[:, 0].numpy(), np.rint(test * 255) >= 128)
    together = torch.cat([all_points(datasets.train), all_points(datasets.valid)])
    assert together[:, 0, :, :3].max() == 0
    assert sorted(map(bytes, together.numpy().astype(np.uint8))) == sorted(
        map(bytes, (np.rint(train * 255) >= 128).astype(np.uint8)[:, None]))  # train = train + valid
    dynamic = get_datasets("omniglot", data_root=str(tmp_path))  # the default: dynamic binarisation
    assert dynamic.train.dynamic and isinstance(dynamic.test, BinaryDataset)


def test_omniglot_from_zips_splits_by_drawer(tmp_path):
    files = {("Alpha", f"character0{c}", f"010{c}_{d:02d}.png"): stroke(0, 15 * c) for c in (1, 2) for d in range(1, 21)}
    write_omniglot_zip(str(tmp_path / "omniglot" / "images_background_small1.zip"), "images_background_small1", files)
    datasets = get_datasets("omniglot", data_root=str(tmp_path), binarization="static")
    assert (len(datasets.train), len(datasets.valid), len(datasets.test)) == (28, 2, 10)  # drawers 1-14 / 15 / 16-20
    assert all_points(datasets.test)[:, 0, 0].sum(-1).tolist() == [4.0] * 5 + [8.0] * 5  # 4 or 8 ink columns
    assert os.listdir(tmp_path / "omniglot") == ["images_background_small1.zip"]
    assert len(cached("omniglot-zips-28x28")) == 1


def test_omniglot_missing(tmp_path):
    with pytest.raises(MissingDataError, match="(?s)chardata.mat.*images_.*zip.*brendenlake"):
        get_datasets("omniglot", data_root=str(tmp_path))


# --- options -----------------------------------------------------------------------------------
def test_unknown_names_and_options():
    with pytest.raises(ValueError, match="available data sets: .*'binmnist'"):
        get_datasets("mnist")
    with pytest.raises(ValueError, match="allowed: \\['static', 'dynamic'\\]"):
        get_datasets("fashion", binarization="stochastic")
    with pytest.raises(ValueError, match="only"):
        get_datasets("gmm", binarization="dynamic")


def test_mini_subsets_are_seeded_and_without_replacement():
    full = all_points(get_datasets("gaussian-toy").train)
    mini = get_datasets("gaussian-toy", mini=True, seed=3)
    assert (len(mini.train), len(mini.valid), len(mini.test)) == (1024, 500, 500)  # at most 5000 / 500 / 500
    valid = all_points(mini.valid)
    assert len({tuple(row.tolist()) for row in valid}) == 500
    assert all((full == row).all(-1).any() for row in valid[:20])
    torch.testing.assert_close(all_points(get_datasets("gaussian-toy", mini=True, seed=3).valid), valid)
    assert not torch.equal(all_points(get_datasets("gaussian-toy", mini=True, seed=4).valid), valid)
    assert not torch.equal(all_points(mini.test), valid)  # the test subset uses seed + 1
    gmm = get_datasets("gmm", mini=True)
    assert (len(gmm.train), len(gmm.valid), len(gmm.test)) == (5000, 100, 100)


def test_only_train_set():
    datasets = get_datasets("shapes", only_train_set=True)
    assert datasets.valid is datasets.train and datasets.test is datasets.train


def test_dataloader_yields_what_batch_yields():
    split = get_datasets("shapes").valid
    loaded = torch.cat(list(DataLoader(split, batch_size=32, shuffle=False)))
    torch.testing.assert_close(loaded, all_points(split))
