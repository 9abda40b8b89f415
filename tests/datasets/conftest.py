"""Data-set tests never touch the network, the user's cache or the shared data folder (loaders
search $OVIS_DATA after any data_root: it is unset here; test_real_data passes it explicitly)."""
import pytest


@pytest.fixture(autouse=True)
def offline_and_private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OVIS_NO_DOWNLOAD", "1")
    monkeypatch.delenv("OVIS_DATA", raising=False)
    monkeypatch.setenv("OVIS_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"
