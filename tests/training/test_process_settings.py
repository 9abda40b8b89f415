"""Process settings of ``run.py``: glibc heap thresholds and the default thread count."""
import argparse
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ovis.devices import SINGLE_THREAD_STEP_MACS
from ovis.training.components import configure_threads
from ovis.launch import HEAP_ENVIRONMENT

REPO = Path(__file__).resolve().parents[2]

# Page faults of 20 steps of a workload like a training step: ~35 MB of activations and
# gradients allocated, touched and freed per step (9,000 pages).
FAULTS = """
import ctypes
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)  # PR_SET_THP_DISABLE: one fault per 4 KiB page, whatever the huge-page supply
import resource, sys, torch
torch.set_num_threads(1)
w = torch.randn(784, 784, requires_grad=True)
x = torch.randn(1200, 784)
def step():
    h = torch.tanh(x @ w)
    (torch.sigmoid(h @ w) * h).sum().backward()
    w.grad = None
for _ in range(10):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc heap settings")
def test_with_the_heap_environment_freed_memory_is_not_faulted_in_at_every_step():
    def faults(heap_environment):
        env = {key: value for key, value in os.environ.items() if key not in HEAP_ENVIRONMENT}
        result = subprocess.run([sys.executable, "-c", FAULTS], capture_output=True, text=True, check=True,
                                cwd=REPO, env={**env, **heap_environment})
        return int(result.stdout)

    # page-fault counts vary from run to run on a shared machine: medians of three processes
    retained = sorted(faults(HEAP_ENVIRONMENT) for _ in range(3))[1]
    default = sorted(faults({}) for _ in range(3))[1]
    assert retained < 9000  # of 180,000 pages touched: less than one step's pages over 20 steps
    assert default > 1.5 * retained  # glibc's default returns freed memory to the system between steps


def _components(parameters: int, device: str = "cpu"):
    model = nn.Linear(parameters, 1, bias=False)
    return SimpleNamespace(model=model, device=torch.device(device))


@pytest.fixture
def restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_small_training_steps_run_on_one_thread(restore_threads):
    torch.set_num_threads(2)
    args = argparse.Namespace(threads=0, bs=24, mc=1, iw=5)
    configure_threads(args, _components(475_000))  # 120 rows x 475k parameters < SINGLE_THREAD_STEP_MACS
    assert torch.get_num_threads() == 1
    assert 120 * 475_000 < SINGLE_THREAD_STEP_MACS < 1200 * 475_000


def test_large_steps_and_explicit_counts_keep_their_threads(restore_threads):
    torch.set_num_threads(2)
    configure_threads(argparse.Namespace(threads=0, bs=24, mc=1, iw=50), _components(475_000))
    assert torch.get_num_threads() == 2
    configure_threads(argparse.Namespace(threads=0, bs=24, mc=1, iw=5), _components(475_000, "cuda"))
    assert torch.get_num_threads() == 2  # CPU threads only launch kernels on a GPU
    configure_threads(argparse.Namespace(threads=3, bs=24, mc=1, iw=5), _components(475_000))
    assert torch.get_num_threads() == 3


def test_evaluations_use_the_requested_threads_and_restore_the_training_threads():
    from ovis.training.evaluation import DEFAULT_THREADS, evaluation_threads, torch_threads
    assert evaluation_threads(argparse.Namespace(threads=3)) == 3
    assert evaluation_threads(argparse.Namespace(threads=0)) == DEFAULT_THREADS
    previous = torch.get_num_threads()
    with torch_threads(previous + 1):
        assert torch.get_num_threads() == previous + 1
    assert torch.get_num_threads() == previous


def test_library_users_get_run_py_thread_setting_through_ovis_set_threads(restore_threads, monkeypatch):
    import ovis
    import ovis.training.components as main
    torch.set_num_threads(2)
    assert ovis.set_threads(1) == 1 == torch.get_num_threads()
    torch.set_num_threads(2)
    assert ovis.set_threads(0, step_macs=120 * 475_000) == 1
    torch.set_num_threads(2)
    assert ovis.set_threads(0) == 2  # no step size given: torch's count kept
    with pytest.raises(ValueError, match="expected an integer >= 1, or 0"):
        ovis.set_threads(-1)
    calls = []
    monkeypatch.setattr(main, "set_threads", lambda *a: calls.append(a))
    main.configure_threads(argparse.Namespace(threads=3, bs=24, mc=1, iw=5), _components(10))
    assert calls == [(3, 120 * 10, torch.device("cpu"))]  # run.py's --threads is the same function
