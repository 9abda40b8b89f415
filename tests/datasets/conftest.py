"""Data-set tests never touch the network, the user's cache or the shared data folder."""
import pytest


@pytest.fixture(autouse=True)
def offline_and_private_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OVIS_NO_DOWNLOAD", "1")
    monkeypatch.setenv("OVIS_CACHE", str(tmp_path / "user-cache"))
    return tmp_path / "user-cache"
