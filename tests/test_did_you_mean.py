"""A misspelt option (run.py, a spec, any script) or metric name gets the name probably meant,
in one line (``ovis.cli.did_you_mean``), not argparse's usage text or a list of every name."""
import json
import os
import subprocess
import sys

import pytest

from ovis.cli import did_you_mean
from ovis.queue.options import check_grid
from ovis.queue.spec import SpecError, load_spec
from ovis.training.arguments import build_parser

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_helper_names_the_closest_spelling_with_dashes_and_underscores_alike():
    assert did_you_mean("grad-keys", ["grad_key", "grad-key", "lr"], "--") == " (did you mean '--grad_key'?)"
    assert did_you_mean("zzz", ["grad_key", "lr"]) == ""


def test_run_py_unknown_option_is_one_line_with_the_suggestion(capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--dataset", "gmm", "--grad-keys", "phi"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.strip().splitlines() == [err.strip()] and "usage:" not in err
    assert "unknown option --grad-keys (did you mean '--grad_key'?)" in err


def test_a_spec_option_typo_gets_the_suggestion(tmp_path):
    spec_path = tmp_path / "typo.json"
    spec_path.write_text(json.dumps({"description": "d", "args": ["--dataset gmm --grad-keys phi"],
                                     "global": "--nsteps 10", "parameters": {"iw": [3]}}))
    spec = load_spec(str(spec_path), str(tmp_path))
    with pytest.raises(SpecError) as error:
        check_grid(spec, spec.grid(), "run.py", ROOT)
    lines = str(error.value).splitlines()
    assert len(lines) == 2 and "unknown option --grad-keys (did you mean '--grad_key'?)" in lines[1]


def test_scripts_print_the_one_line_too():
    result = subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "--dataset", "gmm", "--lrr", "3"],
                            capture_output=True, text=True, timeout=120, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "did you mean '--lr'?" in result.stderr
