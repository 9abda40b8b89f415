"""Estimator identifiers and constructor validation."""
import pytest
import torch

from ovis.estimators import (DReG, OvisAsymptotic, OvisMonteCarlo, Pathwise, PathwiseIWAE, PathwiseVAE,
                             Reinforce, ReinforceBaseline, StickingTheLanding, ThermodynamicVariationalObjective,
                             VIMCO, WakeSleep, WakeWake)
from ovis.estimators.config import EXAMPLE_IDS, describe_estimator_id, parse_estimator_id

from .helpers import build

TABLE = [
    ("pathwise", Pathwise, {}),
    ("Pathwise", Pathwise, {}),
    ("pathwise-vae", PathwiseVAE, {}),
    ("pathwise-iwae", PathwiseIWAE, {}),
    ("stl", StickingTheLanding, {}),
    ("dreg", DReG, {}),
    ("wake-wake", WakeWake, {}),
    ("wake-sleep", WakeSleep, {}),
    ("reinforce", Reinforce, {}),
    ("reinforce-baseline", ReinforceBaseline, {}),
    ("vimco-arithmetic", VIMCO, {"mode": "arithmetic"}),
    ("vimco-geometric", VIMCO, {"mode": "geometric"}),
    ("ovis-S50", OvisMonteCarlo, {"iw_aux": 50, "exclusive": False}),
    ("ovis-S50-exclusive", OvisMonteCarlo, {"iw_aux": 50, "exclusive": True}),
    ("ovis-S0.3", OvisMonteCarlo, {"iw_aux": 0.3, "exclusive": False}),
    ("ovis-gamma1", OvisAsymptotic, {"gamma": 1.0, "leave_one_out": "clipped"}),
    ("ovis-gamma0", OvisAsymptotic, {"gamma": 0.0, "leave_one_out": "clipped"}),
    ("ovis-gamma0.5-arithmetic", OvisAsymptotic, {"gamma": 0.5, "leave_one_out": "arithmetic"}),
    ("ovis-arithmetic-gamma1", OvisAsymptotic, {"gamma": 1.0, "leave_one_out": "arithmetic"}),
    ("ovis-gamma1-geometric", OvisAsymptotic, {"gamma": 1.0, "leave_one_out": "geometric"}),
    ("tvo", ThermodynamicVariationalObjective,
     {"partitions": 2, "log_beta_min": -10.0, "beta_min_rule": None, "integration": "left"}),
    ("tvo-part5-beta2-trapz", ThermodynamicVariationalObjective,
     {"partitions": 5, "log_beta_min": -2.0, "beta_min_rule": None, "integration": "trapz"}),
    ("tvo-part2-config1", ThermodynamicVariationalObjective,
     {"partitions": 2, "log_beta_min": -10.0, "beta_min_rule": "config1", "integration": "left"}),
    ("tvo-part5-config2-right", ThermodynamicVariationalObjective,
     {"partitions": 5, "log_beta_min": -10.0, "beta_min_rule": "config2", "integration": "right"}),
]


@pytest.mark.parametrize("estimator_id,cls,config", TABLE)
def test_parser_table(estimator_id, cls, config):
    assert parse_estimator_id(estimator_id) == (cls, config)


SPECIAL_LAYOUTS = {"pathwise-vae": (8, 1), "pathwise-iwae": (1, 8), "ovis-S2-exclusive": (2, 6)}


@pytest.mark.parametrize("estimator_id", EXAMPLE_IDS)
def test_every_example_id_builds_with_its_particle_layout(estimator_id):
    estimator = build(estimator_id, mc=2, iw=4, x_shape=(3,))
    assert estimator.layout == SPECIAL_LAYOUTS.get(estimator_id, (2, 4))


@pytest.mark.parametrize("bad", ["nonsense", "ovis", "ovis-S", "ovis-gamma", "ovis-gamma1-foo", "ovis-S5-gamma1",
                                 "ovis-gamma1-gamma2", "reinforce-foo", "vimco", "vimco-harmonic", "tvo-S5-beta3",
                                 "tvo-part2-part3", "tvo-left-right", "tvo-part0", "iwae", "", "dreg-baseline"])
def test_invalid_ids_list_the_valid_forms(bad):
    with pytest.raises(ValueError) as error:
        parse_estimator_id(bad)
    message = str(error.value)
    assert "valid forms" in message and "ovis-gamma<g>" in message and "tvo[-part<n>]" in message


@pytest.mark.parametrize("typo, meant", [
    ("OVIS-gamma1", "'ovis-gamma1'"), ("disarm_iw", "'disarm-iw'"), ("relax ", "'relax'"), ("ovis-s1", "'ovis-S1'"),
    ("vimco", "'vimco-arithmetic' or 'vimco-geometric'"), ("iwae", "'pathwise-iwae'"),
    ("rebar-dynamic", "'dynamic-rebar'"), ("ovis-gama1", "'ovis-gamma1'")])
def test_a_near_miss_suggests_the_id_meant(typo, meant):
    with pytest.raises(ValueError, match="valid forms") as error:
        parse_estimator_id(typo)
    assert f"did you mean {meant}" in str(error.value)


def test_a_far_miss_suggests_nothing():
    with pytest.raises(ValueError, match="valid forms") as error:
        parse_estimator_id("banana")
    assert "did you mean" not in str(error.value)


def test_aux_particles_absolute_fraction_and_head_mode():
    assert build("ovis-S50-exclusive", iw=5).iw_aux == 50  # paper: absolute S
    assert build("ovis-S50-exclusive", iw=5).layout == (1, 55)
    Estimator, config = parse_estimator_id("ovis-S50-exclusive", reproduce_original=True)
    assert Estimator(iw=5, **config).iw_aux == 250  # original HEAD: S * K
    assert build("ovis-S0.3", iw=10).iw_aux == 3  # fraction of K
    assert build("ovis-S0.01", iw=10).iw_aux == 1  # at least one
    Estimator, config = parse_estimator_id("ovis-S0.5", reproduce_original=True)
    assert Estimator(iw=10, **config).iw_aux == 5


def test_non_exclusive_budget():
    """Fixed budget K: K' = max(1, K - S) primary particles, K - K' auxiliary ones."""
    estimator = build("ovis-S2", iw=5)
    assert (estimator.layout, estimator.n_primary, estimator.n_theta, estimator.iw_aux) == ((1, 5), 3, 5, 2)
    estimator = build("ovis-S10", iw=5)
    assert (estimator.n_primary, estimator.iw_aux) == (1, 4)
    estimator = build("ovis-S3-exclusive", iw=5)
    assert (estimator.layout, estimator.n_primary, estimator.n_theta) == ((1, 8), 5, 5)


@pytest.mark.parametrize("estimator_id,iw,partition", [
    ("tvo-part2-config1", 5, [0, 0.05, 1]), ("tvo-part2-config1", 10, [0, 0.2, 1]),
    ("tvo-part2-config1", 50, [0, 0.3, 1]), ("tvo-part2-config2", 9, [0, 0.01, 1]),
    ("tvo-part2-config2", 29, [0, 0.02, 1]), ("tvo-part2-config2", 30, [0, 0.03, 1]),
    ("tvo-part5-beta2", 5, [0, 0.01, 0.0316228, 0.1, 0.316228, 1]), ("tvo", 5, [0, 1e-10, 1]),
    ("tvo-part1", 5, [0, 1]),
])
def test_tvo_partitions(estimator_id, iw, partition):
    estimator = build(estimator_id, iw=iw)
    assert torch.allclose(estimator.partition, torch.tensor(partition, dtype=torch.float64), rtol=1e-5, atol=0)


def test_tvo_integration_weights():
    betas = [0.0, 0.01, 0.1, 1.0]
    expected = {"left": [0.01, 0.09, 0.9, 0.0], "right": [0.0, 0.01, 0.09, 0.9],
                "trapz": [0.005, 0.05, 0.495, 0.45]}
    for integration, weights in expected.items():
        estimator = build(f"tvo-part3-beta2-{integration}", iw=3)
        assert torch.allclose(estimator.partition, torch.tensor(betas, dtype=torch.float64))
        assert torch.allclose(estimator.weights, torch.tensor(weights, dtype=torch.float64))


def test_tvo_reproduce_original_ignores_unknown_tokens():
    _, config = parse_estimator_id("tvo-S5-beta3", reproduce_original=True)
    assert config["partitions"] == 2 and config["log_beta_min"] == -3.0
    _, config = parse_estimator_id("tvo-part5x-left-right", reproduce_original=True)
    assert config["partitions"] == 5 and config["integration"] == "left"


@pytest.mark.parametrize("make", [
    lambda: build("reinforce", mc=0), lambda: build("reinforce", iw=0), lambda: build("reinforce", iw=1.5),
    lambda: build("reinforce", iw=True), lambda: build("ovis-gamma1", iw=1), lambda: build("ovis-S1", iw=1),
    lambda: build("reinforce-baseline", iw=2), lambda: VIMCO(iw=2, mode="harmonic"),
    lambda: OvisAsymptotic(iw=2, leave_one_out="median"), lambda: OvisMonteCarlo(iw=2, iw_aux=0),
    lambda: build("reinforce", alpha=1.0), lambda: build("reinforce", beta=-1.0),
    lambda: ThermodynamicVariationalObjective(iw=2, integration="simpson"),
    lambda: ThermodynamicVariationalObjective(iw=2, beta_min_rule="config3"),
])
def test_constructor_errors(make):
    with pytest.raises(ValueError):
        make()


def test_ovis_asymptotic_k1_error_is_explicit():
    with pytest.raises(ValueError, match="iw >= 2"):
        build("ovis-gamma1", iw=1)


def test_reproduce_original_gives_the_original_renyi_correction():
    Estimator, config = parse_estimator_id("ovis-gamma1", reproduce_original=True)
    assert config["reproduce_original"] is True and Estimator(iw=3, **config).reproduce_original
    assert "reproduce_original" not in parse_estimator_id("ovis-gamma1")[1]
    assert not Estimator(iw=3).reproduce_original
    MonteCarlo = parse_estimator_id("ovis-S2")[0]
    assert MonteCarlo(iw=10, iw_aux=0.5, reproduce_original=True).iw_aux == 5


@pytest.mark.parametrize("estimator_id", EXAMPLE_IDS + ("Pathwise", "ovis-S2.0-exclusive", "ovis-gamma1.0",
                                                        "ovis-arithmetic-gamma1", "tvo-part2-beta10-left",
                                                        "concrete-tau0.30"))
def test_the_canonical_key_builds_the_same_estimator(estimator_id):
    description = describe_estimator_id(estimator_id)
    assert parse_estimator_id(description.key) == parse_estimator_id(estimator_id)
    assert describe_estimator_id(description.key).key == description.key


def test_description_keeps_the_typed_parameters_apart():
    """ovis-S2.0 is a fraction of K (2K auxiliary particles), ovis-S2 two particles."""
    fraction, count = describe_estimator_id("ovis-S2.0-exclusive"), describe_estimator_id("ovis-S2-exclusive")
    assert fraction.parameters == (("S_per_K", 2.0),) and count.parameters == (("S", 2),)
    assert fraction.family == count.family == "ovis-S-exclusive"
    assert fraction.key != count.key and fraction.label != count.label
    assert describe_estimator_id("ovis-S50", reproduce_original=True).parameters == (("S_per_K", 50.0),)
    assert describe_estimator_id("tvo-part5-beta2-trapz").parameters == (("part", 5), ("beta", 2))
    assert describe_estimator_id("vimco-arithmetic").label == "VIMCO"
    with pytest.raises(ValueError, match="valid forms"):
        describe_estimator_id("ovis-gamma")
