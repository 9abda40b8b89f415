"""Every benchmark keeps working: each imports, and each runs in a smoke mode (the smallest sizes,
one or two steps: the numbers mean nothing, the code paths run). Those that start fresh processes
for every measurement (their design: glibc and OpenMP read the environment at process start,
allocator state starts clean) are in the slow suite."""
import importlib.util
import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py"))
DATA_ROOT = os.environ.get("OVIS_DATA") or str(REPO.parent / "shared" / "data")
# in this process
SMOKE = {
    "bernoulli_sampling": ["--repeats", "1"],
    "log_density_step": ["--smoke"],
    "queue_scale": ["--records", "20", "--repeats", "1", "--runs", "2", "--processes", "1", "--run_seconds", "0.2",
                    "--heartbeat", "0.1", "--window", "0.3"],
    "rebar_family_speed": ["--steps", "1", "--depth", "1"],
}
# a fresh process per measurement
SMOKE_IN_PROCESSES = {
    "evaluation": ["--iw", "4", "--chunks", "8", "--test_bs", "2", "--batches", "1", "--threads", "1",
                   "--data_root", DATA_ROOT],
    "floor": ["--models", "sbm", "--iw", "2", "--steps", "1", "--untimed_steps", "0", "--data_root", DATA_ROOT],
    "check_targets": ["--models", "sbm", "--steps", "1", "--untimed_steps", "0", "--skip", "evaluation,run",
                      "--data_root", DATA_ROOT],
    "malloc": ["--smoke", "--data_root", DATA_ROOT],
    "compiled_step": ["--iw", "2", "--bs", "2", "--repeats", "1", "--steps", "1", "--untimed_steps", "1",
                      "--data_root", DATA_ROOT],
    "jax_step": ["--iw", "2", "--repeats", "1", "--steps", "1", "--untimed_steps", "1", "--data_root", DATA_ROOT],
}


def test_every_benchmark_has_a_smoke_run():
    assert sorted({**SMOKE, **SMOKE_IN_PROCESSES}) == BENCHMARKS


@pytest.mark.parametrize("name", BENCHMARKS)
def test_every_benchmark_imports(name):
    spec = importlib.util.spec_from_file_location(f"benchmark_{name}", REPO / "benchmarks" / f"{name}.py")
    spec.loader.exec_module(importlib.util.module_from_spec(spec))


@pytest.fixture
def restore_process_state(monkeypatch):
    threads = torch.get_num_threads()
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_benchmark_smoke_run(name, monkeypatch, capsys, restore_process_state):
    monkeypatch.setattr(sys, "argv", [f"{name}.py"] + SMOKE[name])
    try:
        runpy.run_path(str(REPO / "benchmarks" / f"{name}.py"), run_name="__main__")
    except SystemExit as exit:
        assert exit.code in (0, None)
    assert capsys.readouterr().out.strip()


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SMOKE_IN_PROCESSES))
def test_benchmark_smoke_run_in_processes(name):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / f"{name}.py")] + SMOKE_IN_PROCESSES[name],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1) and done.stdout.strip(), done.stderr[-3000:]  # check_targets: 1 = a target missed
