"""Messages and exit codes a new user meets: the same exit code from run.py and manager.py for an
unwritable folder, the folder that is read-only named (not a missing child of it), dbutils
--check's counts shown once, the default experiment name documented."""
import errno
import os
import stat

import pytest

from ovis import exit_codes
from ovis.queue.cli import manager_main
from ovis.queue.dbutils_cli import dbutils_main
from ovis.training.arguments import build_parser
from ovis.apps.train import main as run_main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder this user cannot create anything in: a mode-555 folder, or for root (who ignores
    permission bits) /sys, where mkdir fails for every user."""
    if os.geteuid() != 0:
        folder = tmp_path / "shared"
        folder.mkdir()
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
        yield str(folder)
        folder.chmod(stat.S_IRWXU)
        return
    try:
        os.mkdir("/sys/ovis-probe")
    except OSError as error:
        if error.errno in exit_codes.PERMISSION_ERRNOS:
            yield "/sys"
            return
    pytest.skip("no folder that root cannot write is available here")


def test_an_unwritable_root_is_one_cause_with_one_exit_code_and_the_read_only_folder_named(read_only_folder, capsys):
    root = os.path.join(read_only_folder, "missing", "runs")
    manager_code = manager_main(["--exp", "quickstart", "--root", root, "--queue_only"], project_root=ROOT)
    manager_err = capsys.readouterr().err
    run_code = run_main(["--dataset", "gmm", "--mini", "--epochs", "1", "--root", root, "--silent"])
    run_err = capsys.readouterr().err
    assert manager_code == run_code == exit_codes.BAD_ARGUMENTS
    assert f"{read_only_folder} is read-only for this user: make {read_only_folder} and the files" in manager_err
    assert "make " + os.path.join(root, "quickstart") not in manager_err
    assert "cannot prepare the run folder" in run_err
    assert not os.path.exists(os.path.join(read_only_folder, "missing"))


def test_other_os_errors_are_failures():
    assert exit_codes.for_os_error(OSError(errno.ENOSPC, "full")) == exit_codes.FAILED
    assert exit_codes.for_os_error(PermissionError(errno.EACCES, "no")) == exit_codes.BAD_ARGUMENTS


def test_dbutils_check_shows_the_counts_once(tmp_path, capsys):
    root = str(tmp_path / "runs")
    assert manager_main(["--exp", "quickstart", "--root", root, "--queue_only"], project_root=ROOT) == 0
    capsys.readouterr()
    assert dbutils_main(["--exp", "quickstart", "--root", root, "--check"]) == 0
    out = capsys.readouterr().out
    assert "all runs      15        0        0       0        0     15" in out
    assert "/15 queued" not in out and "15 queued" not in out


def test_the_default_experiment_name_is_documented():
    default = build_parser().get_default("exp")
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    assert default == "sandbox" and f"`--exp` defaults to `{default}`" in readme
