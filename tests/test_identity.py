"""``ovis.identity``: one run identity for run.py, the queue, the reports and the asymptotic
study; the spelling of a number never matters, the length of a run always does."""
import pytest

from ovis.identity import (DATASET_MODEL_OPTIONS, DATASET_MODELS, EXECUTION_OPTIONS, MODEL_OPTIONS, applicable_options,
                           canonical_options, canonical_value, changed_options, run_hash)
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
    changed = [option[0][2:]] + (["nsteps"] if option[0] == "--epochs" else [])  # --epochs replaces --nsteps
    assert changed_options(parse_args(BASE + option), parse_args(BASE)) == changed


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


GMM_CONFIG_OF_AN_OLDER_VERSION = {"dataset": "gmm", "model": "vae", "K": 8, "nlayers": 3, "prior": "normal",
                                  "N": 20, "hdim": 16, "epochs": 6, "nsteps": 500000, "estimator": "reinforce",
                                  "iw": 3, "lr": 0.003, "run_id": "gmm-vae-reinforce-mc1-iw3-seed1-x", "hash": "x"}


def test_a_data_set_with_its_own_model_names_that_model_and_only_the_options_it_reads():
    args = parse_args(["--dataset", "gmm", "--epochs", "6", "--N", "20", "--iw", "3"])
    assert args.model == "gmm"  # config.json records the model trained
    run_id, _ = run_identity(["--dataset", "gmm", "--iw", "3"])
    assert run_id.startswith("gmm-reinforce-mc1-iw3-seed1-") and "vae" not in run_id
    settings = applicable_options(args)
    assert settings["model"] == "gmm" and {"N", "hdim", "epochs"} <= set(settings)
    assert not {"K", "nlayers", "prior", "depth", "nsteps"} & set(settings)
    toy = applicable_options(parse_args(["--dataset", "gaussian-toy"]))
    assert toy["model"] == "gaussian-toy" and "N" not in toy and toy["nsteps"] == 500000  # no --epochs: nsteps reads


def test_runs_of_an_older_version_keep_their_identity_and_show_the_model_trained():
    """A gmm run recorded with model vae, K 8, nsteps 500000 resumes under the new options, and its
    report row shows the model trained without the options it never read."""
    from ovis.reporting.aggregate import attribute_table
    from ovis.reporting.runs import Run
    args = parse_args(["--dataset", "gmm", "--epochs", "6", "--N", "20", "--hdim", "16", "--iw", "3",
                       "--lr", "0.003"])
    assert [name for name in changed_options(args, dict(vars(args), **GMM_CONFIG_OF_AN_OLDER_VERSION))] == []
    row = attribute_table([Run("r", "success", "/r", GMM_CONFIG_OF_AN_OLDER_VERSION)]).loc["r"].to_dict()
    assert row["model"] == "gmm" and not {"K", "nlayers", "prior", "nsteps", "run_id", "hash"} & set(row)


def test_queue_ids_ignore_options_a_data_sets_own_model_does_not_read():
    params = {"dataset": "gmm", "estimator": "ovis-gamma1", "iw": "5", "N": "20", "hdim": "16"}
    assert make_run_id(params) == make_run_id({**params, "K": "8", "nlayers": "3", "model": "vae"})
    assert make_run_id(params) != make_run_id({**params, "hdim": "32"})  # the gmm reads hdim
    assert make_run_id({"dataset": "binmnist", "K": "8"}) != make_run_id({"dataset": "binmnist", "K": "9"})


@pytest.mark.parametrize("dataset", sorted(DATASET_MODELS))
def test_the_options_each_data_sets_model_reads_are_those_of_the_model_registry(dataset):
    from ovis.models import MODELS
    model = DATASET_MODELS[dataset]
    assert set(MODELS[model].defaults) & set(MODEL_OPTIONS) == set(DATASET_MODEL_OPTIONS[model])
