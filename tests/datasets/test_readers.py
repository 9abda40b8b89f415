"""File readers and the cache machinery, on files the tests write themselves."""
import os

import numpy as np
import pytest

from ovis.datasets import sources
from ovis.datasets.readers import read_amat, read_chardata_mat, read_idx, read_npz, read_omniglot_zips

from .writers import stroke, write_amat, write_chardata, write_idx, write_omniglot_zip

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("array", [
    RNG.integers(0, 256, (7, 28, 28)).astype(np.uint8),
    RNG.integers(-100, 100, (5,)).astype(np.int8),
    RNG.integers(-1000, 1000, (3, 4)).astype(np.int16),
    RNG.integers(-10 ** 6, 10 ** 6, (2, 3, 2)).astype(np.int32),
    RNG.standard_normal((4, 2)).astype(np.float32),
    RNG.standard_normal((6,)).astype(np.float64),
])
def test_idx_roundtrip(tmp_path, array, gz):
    path = write_idx(str(tmp_path / "data-idx"), array, gz=gz)
    loaded = read_idx(path)
    assert loaded.shape == array.shape and loaded.dtype == array.dtype.newbyteorder("=")
    np.testing.assert_array_equal(loaded, array)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + b"\x00" * 8)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(str(bad))
    path = write_idx(str(tmp_path / "short"), np.zeros((4, 3), np.uint8))
    with open(path, "ab") as f:
        f.write(b"\x00")
    with pytest.raises(ValueError, match=r"shape \(4, 3\)"):
        read_idx(path)


def test_amat_reader(tmp_path):
    rows = RNG.integers(0, 2, (5, 784))
    loaded = read_amat(write_amat(str(tmp_path / "x.amat"), rows))
    assert loaded.dtype == np.uint8
    np.testing.assert_array_equal(loaded, rows)
    (tmp_path / "bad.amat").write_text("0 1 1\n1 0\n")
    with pytest.raises(ValueError, match="3 binary values on each of 2 lines"):
        read_amat(str(tmp_path / "bad.amat"), n_features=3)


def test_npz_reader_matches_numpy(tmp_path):
    arrays = {"fortran": np.asfortranarray(RNG.random((300, 70))), "c": RNG.integers(0, 9, (4, 5, 6)).astype(np.uint8),
              "fortran3d": np.asfortranarray(RNG.random((3, 4, 5)).astype(np.float32)), "text": np.array("abc"),
              "empty": np.zeros((0, 3))}
    for save in (np.savez, np.savez_compressed):
        path = str(tmp_path / "arrays.npz")
        save(path, **arrays)
        loaded = read_npz(path)
        assert set(loaded) == set(arrays)
        for key, value in arrays.items():
            assert loaded[key].dtype == value.dtype and loaded[key].flags["C_CONTIGUOUS"]
            np.testing.assert_array_equal(loaded[key], value)
    np.savez(str(tmp_path / "objects.npz"), items=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ValueError, match="object arrays"):
        read_npz(str(tmp_path / "objects.npz"))


def test_chardata_images_come_out_upright(tmp_path):
    """Burda's file stores images column-major: an 'L' must be read as an 'L'."""
    letter = np.zeros((28, 28))
    letter[2:20, 3] = 1.0  # vertical bar on the left
    letter[19, 3:12] = 0.5  # horizontal bar at the bottom, grey
    train = np.stack([letter, letter[::-1]])
    path = write_chardata(str(tmp_path / "chardata.mat"), train, letter[None])
    loaded_train, loaded_test = read_chardata_mat(path)
    assert loaded_train.shape == (2, 28, 28) and loaded_test.shape == (1, 28, 28)
    assert loaded_train.dtype == np.uint8
    np.testing.assert_array_equal(loaded_train, np.rint(train * 255))
    np.testing.assert_array_equal(loaded_test[0], np.rint(letter * 255))


def test_omniglot_zips_are_deduplicated_inverted_and_downsampled(tmp_path):
    first = {("Greek", "character01", "0394_01.png"): stroke(0, 15),
             ("Greek", "character01", "0394_02.png"): stroke(0, 0),
             ("Korean", "character02", "0500_17.png"): stroke(15, 30)}
    second = {("Greek", "character01", "0394_01.png"): stroke(0, 15),  # same file in both sets
              ("Tagalog", "character01", "0700_20.png"): stroke(0, 105)}
    paths = [write_omniglot_zip(str(tmp_path / "images_background_small1.zip"), "images_background_small1", first),
             write_omniglot_zip(str(tmp_path / "images_background_small2.zip"), "images_background_small2", second)]
    content = read_omniglot_zips(paths)
    assert list(content["character"]) == ["Greek/character01", "Greek/character01", "Korean/character02",
                                          "Tagalog/character01"]
    np.testing.assert_array_equal(content["drawer"], [1, 2, 17, 20])
    images = content["images"]
    assert images.shape == (4, 28, 28) and images.dtype == np.uint8
    # 105 -> 28 is a factor 3.75: 15 ink columns are exactly the first 4 output columns
    expected = np.zeros((28, 28), np.uint8)
    expected[:, :4] = 255
    np.testing.assert_array_equal(images[0], expected)
    assert images[1].max() == 0  # blank page -> no ink
    np.testing.assert_array_equal(images[2], np.roll(expected, 4, axis=1))
    assert images[3].min() == 255  # all ink
    with pytest.raises(ValueError, match="no Omniglot PNG"):
        empty = write_omniglot_zip(str(tmp_path / "images_empty.zip"), "images_empty", {})
        read_omniglot_zips([empty])


def test_cache_signature_and_atomic_write(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(b"12345")
    key = sources.signature([str(source)], "v1")
    cache = str(tmp_path / "cache.npz")
    sources.save_cache(cache, {"values": np.arange(4)}, key)
    assert set(os.listdir(tmp_path)) == {"source.bin", "cache.npz"}  # no temporary file left
    np.testing.assert_array_equal(sources.load_cache(cache, key)["values"], np.arange(4))
    assert sources.load_cache(cache, sources.signature([str(source)], "v2")) is None  # new format version
    source.write_bytes(b"123456")  # the source changed
    assert sources.load_cache(cache, sources.signature([str(source)], "v1")) is None
    (tmp_path / "torn.npz").write_bytes(b"PK\x03\x04garbage")
    assert sources.load_cache(str(tmp_path / "torn.npz"), key) is None


def test_caches_go_to_the_user_cache_folder_never_beside_the_data(tmp_path, offline_and_private_cache, monkeypatch):
    """Writable or read-only, a data folder gets no cache: the user cache folder does, one file
    per source folder; without $OVIS_CACHE it is $XDG_CACHE_HOME/ovis, then ~/.cache/ovis."""
    shared, private = sources.cache_path(str(tmp_path / "shared"), "data.npz"), sources.cache_path(str(tmp_path), "data.npz")
    assert os.path.dirname(shared) == os.path.dirname(private) == str(offline_and_private_cache)
    assert shared != private and os.path.basename(shared).startswith("data-") and shared.endswith(".npz")
    monkeypatch.delenv("OVIS_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.user_cache_dir() == str(tmp_path / "xdg" / "ovis")
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sources.user_cache_dir() == os.path.expanduser("~/.cache/ovis")


def test_data_roots_and_disabled_downloads(tmp_path, monkeypatch):
    monkeypatch.setenv("OVIS_DATA", str(tmp_path / "env"))
    monkeypatch.chdir(tmp_path)
    assert sources.data_roots() == [str(tmp_path / "env"), str(tmp_path / "data")]
    assert sources.data_roots("given") == [str(tmp_path / "given"), str(tmp_path / "env"), str(tmp_path / "data")]
    assert sources.download("http://example.invalid/file", "file") is None
    assert not os.path.exists(os.path.join(sources.user_cache_dir(), "file"))
