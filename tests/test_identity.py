"""``ovis.identity``: one run identity for run.py, the queue, the reports and the asymptotic
study; the spelling of a number never matters, the length of a run always does."""
import pytest

from ovis.identity import EXECUTION_OPTIONS, canonical_options, canonical_value, changed_options, run_hash
from ovis.queue.spec import make_run_id
from ovis.reporting.runs import BOOKKEEPING_OPTIONS
from ovis.training.arguments import parse_args, run_identity

BASE = ["--dataset", "binmnist", "--model", "sbm", "--estimator", "ovis-gamma1", "--iw", "5"]


@pytest.mark.parametrize("value, expected", [("3e-4", 3e-4), (0.0003, 3e-4), ("4e6", 4000000), (4e6, 4000000),
                                             ("5", 5), (True, True), (None, None), ("ovis-gamma1", "ovis-gamma1"),
                                             ("nan", "nan"), ([1.0, "2"], [1, 2])])
def test_canonical_values_are_typed_numbers(value, expected):
    assert canonical_value(value) == expected and type(canonical_value(value)) is type(expected)


def test_run_py_spellings_of_a_number_are_one_run_and_execution_options_do_not_count():
    first = parse_args(BASE + ["--lr", "3e-4", "--nsteps", "4e6"])
    second = parse_args(BASE + ["--lr", "0.0003", "--nsteps", "4000000", "--workers", "3", "--device", "cpu",
                                "--root", "elsewhere", "--test_bs", "7", "--threads", "2"])
    assert run_hash(first) == run_hash(second) and run_identity(BASE + ["--lr", "3e-4"])[1] == run_hash(
        parse_args(BASE + ["--lr", ".0003"]))
    assert changed_options(first, second) == []


@pytest.mark.parametrize("option", [["--nsteps", "1000"], ["--epochs", "3"], ["--lr", "1e-3"], ["--optimizer", "sgd"]])
def test_length_schedule_and_optimisation_options_make_another_run(option):
    assert run_hash(parse_args(BASE + option)) != run_hash(parse_args(BASE))
    assert changed_options(parse_args(BASE + option), parse_args(BASE)) == [option[0][2:]]


def test_the_queue_ids_use_the_same_identity():
    params = {"dataset": "gmm", "estimator": "ovis-gamma1", "iw": "5", "lr": "3e-4"}
    assert make_run_id(params) == make_run_id({**params, "lr": "0.0003", "silent": True, "workers": "4"})
    assert make_run_id(params) != make_run_id({**params, "nsteps": "1000"})
    assert make_run_id(params).endswith("-" + run_hash({**params, "lr": 0.0003, "iw": 5})[:12])


def test_a_stored_config_is_compared_by_options_not_by_its_hash():
    args = parse_args(BASE + ["--lr", "3e-4"])
    stored = {**vars(args), "hash": "written-by-an-older-version", "run_id": "x", "lr": 0.0003}
    assert changed_options(args, stored) == []
    assert set(canonical_options(stored)) == set(canonical_options(args))
    assert BOOKKEEPING_OPTIONS == EXECUTION_OPTIONS
