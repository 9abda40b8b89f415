"""Fixtures of the reporting tests."""
import pytest

from ovis import records

from .helpers import ESTIMATORS, IWS, SEEDS, STEPS, write_run


def make_experiment(tmp_path):
    """``<tmp>/runs/grid``: 3 estimators x 2 K x 3 seeds, all successful, plus one failed
    and one unfinished run (seed 4)."""
    root = tmp_path / "runs"
    exp_dir = root / "grid"
    for estimator in ESTIMATORS:
        for iw in IWS:
            for seed in SEEDS:
                config = {"dataset": "binmnist", "model": "sbm", "estimator": estimator, "iw": iw, "mc": 1,
                          "seed": seed, "lr": 3e-4, "hash": f"h{estimator}{iw}{seed}", "exp": "grid",
                          "root": str(root)}
                write_run(str(exp_dir), f"binmnist-sbm-{estimator}-iw{iw}-seed{seed}", config)
    failed = {"dataset": "binmnist", "model": "sbm", "estimator": "reinforce", "iw": 50, "mc": 1, "seed": 4,
              "lr": 3e-4}
    write_run(str(exp_dir), "binmnist-sbm-reinforce-iw50-seed4-failed", failed, steps=STEPS[:3],
              outcome=records.FAILED, message="RuntimeError: loss is NaN\nTraceback (most recent call last): ...")
    write_run(str(exp_dir), "binmnist-sbm-vimco-arithmetic-iw50-seed4-running",
              dict(failed, estimator="vimco-arithmetic"), steps=STEPS[:5], outcome=None)
    return {"root": str(root), "exp": "grid", "exp_dir": str(exp_dir), "output": str(tmp_path / "reports")}


@pytest.fixture
def experiment(tmp_path):
    return make_experiment(tmp_path)


@pytest.fixture(scope="module")
def shared_experiment(tmp_path_factory):
    """The same experiment, written once per test module (for tests that only read it)."""
    return make_experiment(tmp_path_factory.mktemp("shared"))
