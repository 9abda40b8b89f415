"""An estimator plugin package, discovered through its entry point (group ``ovis.estimators``, a
``.dist-info`` folder on the path as an installed package has), works where built-in ids work:
run.py (with --track_grad_variances), ``python -m ovis.apps.check``, ovis.Loss,
loss_from_log_probs, PyroLoss, the queue's spec check and the report styles; and
``examples/own_estimator.py`` trains through run.py and checks with $OVIS_ESTIMATOR_PLUGINS."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ovis import exit_codes

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = os.environ.get("OVIS_DATA") or str(REPO.parent / "shared" / "data")
SHORT_RUN = ["--mini", "--nsteps", "3", "--bs", "1000", "--max_eval", "20", "--iw_test", "3", "--iw_valid", "3",
             "--grad_samples", "2", "--grad_bs", "2", "--test_bs", "20", "--silent", "--data_root", DATA_ROOT]

PLUGIN = '''
from ovis.estimators import EstimatorFamily, Style
from ovis.estimators.score_function import ScoreFunctionEstimator


class HalfBound(ScoreFunctionEstimator):
    """Reinforce with c_k = L / 2 (a function of all particles: biased)."""

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        return bound.unsqueeze(-1) / 2


def family():
    return EstimatorFamily(name="half", grammar="half-bound", ids={"half-bound": (HalfBound, {})},
                           examples=("half-bound",), label="half bound", style=Style("#123456", (8, 1)))
'''
ENTRY_POINTS = "[ovis.estimators]\nhalf = half_plugin:family\n"

EVERY_ENTRY_POINT = '''
import json, sys, torch
from ovis import exit_codes
from ovis.estimators.config import parse_estimator_id
from ovis.apps.train import main
result = {}
result["run"] = main(["--model", "sbm", "--dataset", "binmnist", "--estimator", "half-bound", "--root", sys.argv[1],
                      "--exp", "e", "--run_id", "r", "--track_grad_variances", "half-bound,reinforce"] + sys.argv[3:])

import ovis
sys.path.insert(0, "examples")
from black_box import GenerativeModel, InferenceNetwork
loss = ovis.Loss("half-bound", InferenceNetwork(16, 4), GenerativeModel(16, 4), iw=3)(torch.rand(5, 16).round())
loss.backward()
result["Loss"] = loss.item()
Estimator, config = parse_estimator_id("half-bound")
log_p, log_q = torch.randn(4, 1, 3, requires_grad=True), torch.randn(4, 1, 3, requires_grad=True)
result["loss_from_log_probs"] = list(Estimator(iw=3, **config).loss_from_log_probs(log_p, log_q)[0].shape)

import pyro, pyro.distributions as dist
from ovis.estimators.pyro import PyroLoss
def model(x):
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)
def guide(x):
    loc = pyro.param("loc", torch.tensor(0.1))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(loc, 1.0))
result["PyroLoss"] = PyroLoss("half-bound", iw=4, max_plate_nesting=1).loss(model, guide, torch.tensor([1.0, 2.0]))

from ovis.queue.spec import load_spec
from ovis.queue import options
spec = load_spec(sys.argv[2], ".")
result["queue"] = options.check_grid(spec, spec.grid(), "run.py", ".")
from ovis.reporting.style import estimator_style
result["style"] = [estimator_style("half-bound").label, list(estimator_style("half-bound").color)]
print("RESULT" + json.dumps(result))
'''


def install_plugin(site: Path) -> dict:
    """The plugin module and its distribution metadata (what ``pip install`` writes), on PYTHONPATH."""
    (site / "half_plugin-1.0.dist-info").mkdir(parents=True)
    (site / "half_plugin-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: half-plugin\n"
                                                                 "Version: 1.0\n")
    (site / "half_plugin-1.0.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "half_plugin.py").write_text(PLUGIN)
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), str(site)]), OVIS_ESTIMATOR_PLUGINS="")


def test_a_plugin_package_works_through_every_entry_point(tmp_path):
    env = install_plugin(tmp_path / "site")
    spec = tmp_path / "plugin-spec.json"
    spec.write_text(json.dumps({"global": "--silent", "parameters": {"estimator": ["half-bound", "reinforce"]}}))
    script = tmp_path / "every_entry_point.py"
    script.write_text(textwrap.dedent(EVERY_ENTRY_POINT))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "runs"), str(spec)] + SHORT_RUN, cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.split("RESULT")[-1])
    assert result["run"] == exit_codes.SUCCESS
    metrics = (tmp_path / "runs" / "e" / "r" / "metrics.jsonl").read_text()
    assert "grad_log_variance/half-bound" in metrics
    assert result["loss_from_log_probs"] == [4] and isinstance(result["Loss"], float)
    assert isinstance(result["PyroLoss"], float) and result["queue"] == []
    assert result["style"][0] == "half bound" and result["style"][1] == pytest.approx([0x12 / 255, 0x34 / 255, 0x56 / 255])

    check = subprocess.run([sys.executable, "-m", "ovis.apps.check", "--estimators", "half-bound,reinforce",
                            "--iw", "2", "--samples", "200"], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    rows = {line.split()[0]: line.split() for line in check.stdout.splitlines() if line.startswith(("half", "reinf"))}
    assert float(rows["reinforce"][-4]) < 1e-10 < float(rows["half-bound"][-4])  # relative phi bias, exact


def test_a_plugin_that_fails_to_load_is_named_before_any_work(tmp_path):
    env = install_plugin(tmp_path / "site")
    (tmp_path / "site" / "half_plugin.py").write_text("raise ImportError('half_plugin needs numpy 9')\n")
    done = subprocess.run([sys.executable, "run.py", "--estimator", "reinforce", "--root", str(tmp_path / "runs")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == exit_codes.BAD_ARGUMENTS, done.stderr[-2000:]
    assert "estimator plugin 'half' (entry point 'half_plugin:family', group 'ovis.estimators') failed to load: " \
           "ImportError: half_plugin needs numpy 9; fix or uninstall the package that declares it" in done.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_the_own_estimator_example_trains_through_run_py_and_checks(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "examples/own_estimator.py", "--root", str(tmp_path), "--run_id", "r",
                           "--track_grad_variances", "reinforce-ma"] + SHORT_RUN, cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "grad_log_variance/reinforce-ma" in (tmp_path / "own-estimator" / "r" / "metrics.jsonl").read_text()
    env["OVIS_ESTIMATOR_PLUGINS"] = "examples.own_estimator"
    check = subprocess.run([sys.executable, "-m", "ovis.apps.check", "--estimators", "reinforce-ma", "--iw", "2",
                            "--samples", "200"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr[-3000:]
    row = next(line.split() for line in check.stdout.splitlines() if line.startswith("reinforce-ma"))
    assert row[2:4] == ["∇", "L_K"] and float(row[-4]) < 1e-10  # unbiased for ∇ L_K: exact relative phi bias
