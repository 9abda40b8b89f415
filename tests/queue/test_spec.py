"""Experiment specs: validation messages, grid expansion, run ids, the paper's specs."""
import hashlib
import json
import os

import pytest

from ovis.queue.options import check_grid
from ovis.queue.spec import SpecError, load_spec, make_run_id, parse_spec

from .helpers import FAKE_SCRIPT, ROOT, write_spec

EXPERIMENTS = os.path.join(ROOT, "experiments")


def spec_of(**data):
    return parse_spec(data, "test", "/specs/test.json")


def test_grid_order_args_line_fastest_last_parameter_slowest():
    spec = spec_of(args=["--a 1", "--b 2"], **{"global": "--d 3"}, parameters={"c": ["p1", "p2"], "e": [1, 2]})
    points = spec.grid()
    assert len(points) == spec.size == 2 * 2 * 2
    assert [(p.params.get("a"), p.params.get("b"), p.params["c"], p.params["e"]) for p in points] == [
        ("1", None, "p1", "1"), (None, "2", "p1", "1"), ("1", None, "p2", "1"), (None, "2", "p2", "1"),
        ("1", None, "p1", "2"), (None, "2", "p1", "2"), ("1", None, "p2", "2"), (None, "2", "p2", "2")]
    assert points[0].argv == ("--c", "p1", "--e", "1", "--d", "3", "--a", "1")
    assert [p.index for p in points] == list(range(8))


def test_precedence_args_over_global_over_parameters():
    spec = spec_of(args=["--x 0", "--lr 3"], **{"global": "--lr 2"}, parameters={"lr": [1], "y": [5]})
    points = spec.grid()
    assert [p.argv for p in points] == [("--lr", "1", "--y", "5", "--lr", "2", "--x", "0"),
                                        ("--lr", "1", "--y", "5", "--lr", "2", "--lr", "3")]
    assert [p.params["lr"] for p in points] == ["2", "3"]  # argparse keeps the last occurrence


def test_parameter_values_booleans_are_flags_and_numbers_use_str():
    points = spec_of(parameters={"flag": [True, False], "lr": [3e-4], "n": [1e4], "k": [5]}).grid()
    assert points[0].argv == ("--flag", "--lr", "0.0003", "--n", "10000.0", "--k", "5")
    assert points[1].argv == ("--lr", "0.0003", "--n", "10000.0", "--k", "5")
    assert points[0].params["flag"] is True and "flag" not in points[1].params


def test_run_id_is_a_hash_of_the_canonical_arguments():
    params = {"dataset": "gmm", "estimator": "ovis-gamma1", "iw": "5", "seed": "2", "silent": True}
    canonical = json.dumps({"dataset": "gmm", "estimator": "ovis-gamma1", "iw": 5, "seed": 2}, sort_keys=True,
                           separators=(",", ":"))  # numbers as numbers, without the execution option --silent
    expected_hash = hashlib.md5(canonical.encode()).hexdigest()[:12]
    assert make_run_id(params) == f"gmm-ovis-gamma1-iw5-seed2-{expected_hash}"


def test_run_ids_do_not_depend_on_option_order_or_placement():
    first = spec_of(args=["--estimator vimco-arithmetic --iw 5", "--estimator ovis-gamma1 --iw 5"],
                    **{"global": "--seed 1 --lr 0.1"}, parameters={"dataset": ["gmm", "gaussian-toy"]})
    second = spec_of(args=["--iw 5 --estimator ovis-gamma1", "--iw=5 --estimator vimco-arithmetic"],
                     **{"global": "--dataset gmm --lr 0.1 --silent --workers 4"},
                     parameters={"seed": [1], "dataset": ["gaussian-toy", "gmm"]})
    ids = [p.run_id for p in first.grid()]
    assert len(set(ids)) == 4
    # --dataset in 'global' of the second spec overrides its parameter: 2 distinct runs, both in the first grid
    assert {p.run_id for p in second.grid()} <= set(ids)
    assert len({p.run_id for p in second.grid()}) == 2


def test_duplicate_grid_points_are_queued_once_and_counted():
    spec = spec_of(args=["--x 1"], parameters={"seed": [1, 1, 2]})
    assert [p.params["seed"] for p in spec.grid()] == ["1", "2"]
    assert spec.duplicates == 1
    # a parameter overridden by 'global' collapses to one run per value of the others
    spec = spec_of(**{"global": "--c fixed"}, parameters={"c": ["p1", "p2", "p3"], "seed": [1, 2]})
    assert len(spec.grid()) == 2 and spec.duplicates == 4


@pytest.mark.parametrize("data, message", [
    ([1, 2], "must be a JSON object"),
    ({"argss": ["--a 1"]}, "unknown key 'argss' (did you mean 'args'?)"),
    ({"args": "--a 1"}, "'args' must be a list of strings"),
    ({"args": []}, "'args' is an empty list: the grid is empty"),
    ({"global": ["--a"]}, "'global' must be a string"),
    ({"parameters": {"lr": 0.1}}, "parameter 'lr' must be a non-empty list of values, got 0.1"),
    ({"parameters": {"lr": []}}, "parameter 'lr' must be a non-empty list of values, got []"),
    ({"parameters": {"lr": [[0.1]]}}, "parameter 'lr': value [0.1] is not a string, number or boolean"),
    ({"parameters": {"--lr": [0.1]}}, "parameter name '--lr' is not an option name"),
    ({"global": "--root /tmp"}, "'global' sets --root, which the manager sets for every run"),
    ({"args": ["--run_id x"]}, "args[0] sets --run_id"),
    ({"parameters": {"exp": ["a"]}}, "'parameters' sets --exp"),
    ({"script": ""}, "'script' must be a non-empty string"),
])
def test_malformed_specs_are_refused_with_the_problem_named(data, message):
    with pytest.raises(SpecError) as error:
        parse_spec(data, "test", "/specs/test.json")
    assert message in str(error.value)
    assert str(error.value).startswith("/specs/test.json: ")


@pytest.mark.parametrize("data, message", [
    ({"args": ["--lr 1 2"]}, "unexpected token '2'"),
    ({"args": ["--name 'unclosed"]}, "args[0]: cannot split"),
    ({"args": ["positional"]}, "unexpected token 'positional'"),
])
def test_bad_argument_strings_are_refused(data, message):
    with pytest.raises(SpecError, match="test.json") as error:
        spec_of(**data).grid()
    assert message in str(error.value)


def test_invalid_json_reports_line_and_column(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{\n  "args": ["--a 1"],\n  "global": "--b 2"\n  "parameters": {}\n}\n')
    with pytest.raises(SpecError) as error:
        load_spec(str(path), str(tmp_path))
    assert "invalid JSON at line 4, column 3: Expecting ',' delimiter" in str(error.value)


def test_unknown_experiment_lists_the_available_ones(tmp_path):
    write_spec(tmp_path, "alpha", args=["--a 1"])
    with pytest.raises(SpecError, match=r"experiment 'beta' not found.*Available in .*: alpha"):
        load_spec("beta", str(tmp_path))


def test_missing_script_is_refused(tmp_path):
    spec = load_spec(write_spec(tmp_path, "s", script="nope.py"), str(tmp_path))
    with pytest.raises(SpecError, match="script 'nope.py' not found"):
        spec.script_path(ROOT)


# -- options against the script ---------------------------------------------------------------

def test_options_of_a_foreign_script_are_checked_through_its_help(tmp_path):
    spec = spec_of(args=["--valu x --steps 2"])        # --valu: unique prefix of --value, as argparse allows
    assert check_grid(spec, spec.grid(), FAKE_SCRIPT, ROOT) == []
    spec = spec_of(args=["--stepz 2"])
    with pytest.raises(SpecError, match=r"unknown option --stepz \(did you mean '--steps'\?\) for fake_script.py"):
        check_grid(spec, spec.grid(), FAKE_SCRIPT, ROOT)
    spec = spec_of(args=["--s 2"])
    with pytest.raises(SpecError, match=r"unknown option --s \(ambiguous: --seed, --sleep, --steps\)"):
        check_grid(spec, spec.grid(), FAKE_SCRIPT, ROOT)


RUN_PY = os.path.join(ROOT, "run.py")


@pytest.mark.parametrize("data, message", [
    ({"parameters": {"lrr": [0.1]}}, "unknown option --lrr (did you mean '--lr'?)"),
    ({"parameters": {"iw": ["abc"]}}, "argument --iw: expected an integer, got 'abc'"),
    ({"parameters": {"optimizer": ["adamm"]}}, "argument --optimizer: invalid choice: 'adamm'"),
    ({"args": ["--warmup 100"]}, "--warmup 100 needs --alpha_init"),
    ({"args": ["--estimator ovis-gamma1", "--estimator ovis-banana"]},
     "grid point 1 (--estimator ovis-banana): --estimator 'ovis-banana': unknown estimator id"),
    ({"args": ["--estimator ovis-gamma1 --iw 1", "--estimator ovis-gamma1 --iw 5", "--estimator ovis-gamma0 --iw 1"]},
     "run.py refuses 2 of the 3 grid points; nothing was queued"),  # checked before queueing
    ({"args": ["--estimator ovis-gamma1 --iw 1"]}, "needs iw >= 2"),
])
def test_run_py_grids_are_parsed_with_run_py_parser(data, message):
    spec = spec_of(**data)
    with pytest.raises(SpecError) as error:
        check_grid(spec, spec.grid(), RUN_PY, ROOT)
    assert message in str(error.value)


# -- the paper's specs ------------------------------------------------------------------------

EXPECTED_RUNS = {
    "asymptotic-variance": 6, "asymptotic-variance-extended": 5, "asymptotic-variance-mini": 2,
    "gaussian-mixture-model": 10 * 4 * 10, "gaussian-mixture-model-cpu": 6 * 4, "sigmoid-belief-network": 12 * 3 * 3 * 3,
    "gaussian-vae": 7 * 3 * 3 * 3, "budget-analysis": 7 * 5 * 3, "budget-analysis-sbm": 7 * 5 * 3,
    "gaussian-toy": 10 * 3 * 5, "mini-vae": 4 * 3 * 2, "quickstart": None, "rebar-comparison": 2 * 2,
    "discrete-estimators": (4 * 12 + 3 * 3 + 5 * 3 + 3) * 2 * 3, "discrete-estimators-reduced": 6 * 3,
    "rebar-code-sbn": 3, "rebar-code-sbn-ab": 6, "rebar-code-sbn-estimator-ab": 8, "rebar-code-omniglot": 3,
    "rebar-code-omniglot-ab": 11, "sigmoid-belief-network-cpu": 12 * 2,
}


def test_every_experiment_has_an_expected_count():
    assert sorted(f[:-5] for f in os.listdir(EXPERIMENTS) if f.endswith(".json")) == sorted(EXPECTED_RUNS)


@pytest.mark.parametrize("name", sorted(EXPECTED_RUNS))
def test_paper_specs_expand_and_pass_their_script_checks(name):
    spec = load_spec(name, EXPERIMENTS)
    points = spec.grid()
    if EXPECTED_RUNS[name] is not None:
        assert len(points) == EXPECTED_RUNS[name]
    assert spec.description
    assert check_grid(spec, points, spec.script_path(ROOT), ROOT) == []


def test_sigmoid_belief_network_matches_the_paper_settings():
    points = load_spec("sigmoid-belief-network", EXPERIMENTS).grid()
    values = lambda key: sorted({p.params.get(key) for p in points}, key=str)  # noqa: E731
    assert values("iw") == ["10", "5", "50"] and values("seed") == ["1", "2", "3"]
    assert values("dataset") == ["binmnist", "fashion", "omniglot"]
    assert values("estimator") == sorted(["vimco-arithmetic", "ovis-gamma0", "ovis-gamma1", "ovis-S1-exclusive",
                                          "ovis-S10-exclusive", "ovis-S50-exclusive", "tvo-part2-config1"])
    warm = [p for p in points if p.params.get("warmup")]
    assert len(warm) == 5 * 27 and {p.params["id"] for p in warm} == {"iwrbound"}
    assert {(p.params["alpha_init"], p.params["warmup"], p.params["warmup_mode"]) for p in warm} == {
        ("0.99", "1000000", "log")}
    assert {p.params["lr"] for p in points} == {"0.0003"} and {p.params["nsteps"] for p in points} == {"4000000"}
