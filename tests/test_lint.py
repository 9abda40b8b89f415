"""The repository passes ``ruff check`` with the rule set of ``pyproject.toml`` ([tool.ruff])."""
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def ruff_command():
    if shutil.which("ruff"):
        return ["ruff"]
    if subprocess.run([sys.executable, "-m", "ruff", "--version"], capture_output=True).returncode == 0:
        return [sys.executable, "-m", "ruff"]
    pytest.skip("ruff is not installed (pip install -r requirements.txt)")


def test_ruff_passes_on_the_repository():
    done = subprocess.run(ruff_command() + ["check", "--no-cache", "."], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-1000:]


def test_ruff_finds_an_unused_import(tmp_path):
    """The configured rules do run: a deliberately broken file fails them."""
    broken = tmp_path / "broken.py"
    broken.write_text("import os\n")
    done = subprocess.run(ruff_command() + ["check", "--no-cache", "--config", str(REPO / "pyproject.toml"),
                                            str(broken)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "F401" in done.stdout
