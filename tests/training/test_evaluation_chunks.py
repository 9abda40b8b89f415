"""The rows per forward pass of a run's evaluations: the fastest chunk that fits the memory,
measured on the evaluation's own pass without touching the run's random draws."""
import pytest
import torch

import ovis.training.evaluation as evaluation
from ovis.models import get_model
from ovis.training.evaluation import CHUNK_CANDIDATES, fastest_chunk_rows, measured_chunk_rows

CPU = torch.device("cpu")


@pytest.mark.parametrize("levelled_off, measured, chosen", [(True, [512, 1024, 2048], 512),
                                                            (False, list(CHUNK_CANDIDATES["cpu"]), 32768)])
def test_chunks_are_measured_until_the_throughput_levels_off(monkeypatch, levelled_off, measured, chosen):
    # a chunk timed in proportion to its rows (levelled off), or in constant time (faster with every size)
    monkeypatch.setattr(evaluation, "timed", lambda run, device, rows: (rows if levelled_off else 1.0,) * 2)
    rows, throughput = fastest_chunk_rows(lambda rows: None, CPU, 1e12, 1, CHUNK_CANDIDATES["cpu"])
    assert (sorted(throughput), rows) == (measured, chosen)


def test_the_chosen_chunk_fits_the_memory_and_is_within_the_tolerance_of_the_fastest():
    ran = []
    rows, throughput = fastest_chunk_rows(ran.append, CPU, memory_bytes=2048 * 100, bytes_per_row=100,
                                          candidates=(512, 1024, 2048, 4096))
    assert set(ran) == set(throughput) <= {512, 1024, 2048} and rows in throughput
    assert throughput[rows] >= 0.9 * max(throughput.values())
    assert fastest_chunk_rows(ran.append, CPU, 10, 100, candidates=(512, 1024))[0] == 512  # none fits: the smallest


def test_the_run_measures_its_evaluation_pass_up_to_the_largest_evaluation_on_a_forked_rng():
    model = get_model("sbm", x_shape=(1, 6, 6), N=8, depth=2, nlayers=0).eval()
    x = (torch.rand(1, 1, 6, 6) > 0.5).float()
    torch.manual_seed(3)
    expected = torch.rand(3)
    torch.manual_seed(3)
    rows, throughput = measured_chunk_rows(model, x, largest_rows=600)
    assert torch.equal(torch.rand(3), expected)  # the caller's draws do not depend on the measurement
    assert sorted(throughput) == [512, 1024] and rows in throughput
    assert sorted(measured_chunk_rows(model, x, largest_rows=100)[1]) == [512]
