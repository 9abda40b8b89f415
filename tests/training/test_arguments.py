import pytest

from ovis.identity import EXECUTION_OPTIONS
from ovis.training.arguments import (ArgumentError, build_parser, default_run_id, model_name,
                                     parse_args, run_hash, run_identity)

# The original's defaults (data_root, alpha_init, and the defaults that work on the first try:
# iw, max_eval, grad_key, differ on purpose, see the module doc)
SPEC_DEFAULTS = {
    "dataset": "shapes", "mini": False, "root": "runs/", "exp": "sandbox", "id": "", "seed": 1, "workers": 1,
    "rf": False, "silent": False, "deterministic": False, "sequential_computation": False, "epochs": -1,
    "nsteps": 500000, "optimizer": "adam", "lr": 2e-3, "freebits": None, "baseline_lr": 5e-3, "bs": 32,
    "valid_bs": 50, "test_bs": 50, "lr_reduce_steps": 0, "only_train_set": False, "estimator": "reinforce",
    "mc": 1, "iw": 5, "beta": 1.0, "tau": 0.0, "alpha": 0.0, "warmup": 0, "warmup_offset": 0,
    "warmup_mode": "log", "eval_freq": 10, "max_eval": 1000, "iw_valid": 100, "iw_test": 1000, "model": "vae",
    "nlayers": 3, "b_nlayers": 1, "normalization": "none", "dropout": 0.0,
    "prior": "normal", "N": 32, "K": 8, "kdim": 0, "learn_prior": False, "mc_au_analysis": 0,
    "npoints_au_analysis": 1000, "grad_bs": 10, "grad_samples": 100, "grad_key": None,
    "grad_epsilon": 1e-15,
}


def test_defaults_are_the_originals():
    args = vars(parse_args([]))
    assert {key: args[key] for key in SPEC_DEFAULTS} == SPEC_DEFAULTS
    assert args["data_root"] is None and args["alpha_init"] is None and args["device"] == "auto"
    assert args["depth"] is None and args["hdim"] is None  # the model's own (see ovis.training.arguments)
    assert args["resume"] is False and args["run_id"] is None and args["au_threshold"] == 1e-2


def test_step_counts_accept_integral_float_literals():
    args = parse_args(["--nsteps", "4e6", "--warmup", "1000000.0", "--alpha_init", "0.99", "--max_eval", "1e4"])
    assert (args.nsteps, args.warmup, args.max_eval) == (4000000, 1000000, 10000)
    assert parse_args(["--max_eval", "None", "--freebits", "none"]).max_eval is None


def test_non_integral_counts_are_refused_by_the_parser(capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--iw", "2.5"])
    assert exit_info.value.code == 2
    assert "expected an integer, got '2.5'" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--iw", "0"], "--iw must be >= 1, got 0"),
    (["--mc", "0"], "--mc must be >= 1"),
    (["--bs", "0"], "--bs must be >= 1"),
    (["--alpha", "1"], r"--alpha must be in \[0, 1\)"),
    (["--warmup", "100"], "needs --alpha_init"),
    (["--warmup", "100", "--alpha_init", "1.5"], r"--alpha_init must be in \[0, 1\)"),
    (["--grad_samples", "1"], "0 \\(skip\\) or >= 2"),
    (["--grad_key", " , "], "--grad_key must name"),
    (["--mc_au_analysis", "10", "--npoints_au_analysis", "1"], "npoints_au_analysis must be >= 2"),
    (["--lr", "0"], "--lr and --baseline_lr must be > 0"),
    (["--run_id", "a/b"], "plain folder name"),
    (["--model", "gmm", "--dataset", "binmnist"], "--model gmm only goes with --dataset gmm"),
])
def test_bad_options_are_refused_with_what_is_allowed(argv, message):
    with pytest.raises(ArgumentError, match=message):
        parse_args(argv)


def test_datasets_with_their_own_model_force_it():
    assert model_name(parse_args(["--dataset", "gmm", "--model", "vae"])) == "gmm"
    assert model_name(parse_args(["--dataset", "gaussian-toy"])) == "gaussian-toy"
    assert model_name(parse_args(["--dataset", "binmnist", "--model", "sbm"])) == "sbm"


def test_hash_ignores_order_spelling_and_bookkeeping():
    a = parse_args(["--lr", "3e-4", "--iw", "5", "--estimator", "ovis-gamma1", "--root", "/x", "--nsteps", "1e1"])
    b = parse_args(["--estimator", "ovis-gamma1", "--iw", "5.0", "--lr", "0.0003", "--workers", "4", "--silent",
                    "--nsteps", "10",
                    "--device", "cpu", "--resume", "--run_id", "other", "--exp", "e"])
    assert run_hash(a) == run_hash(b)
    assert run_hash(a) != run_hash(parse_args(["--lr", "3e-4", "--iw", "5", "--estimator", "ovis-gamma1", "--seed", "2"]))
    assert len(run_hash(a)) == 32 and all(c in "0123456789abcdef" for c in run_hash(a))
    assert {"root", "data_root", "exp", "workers", "silent", "valid_bs", "test_bs",
            "rf", "sequential_computation", "device", "resume", "run_id"} <= EXECUTION_OPTIONS


def test_default_run_id_follows_the_design():
    args = parse_args(["--id", "iwrbound", "--dataset", "binmnist", "--model", "sbm", "--estimator", "ovis-gamma1",
                       "--iw", "50", "--alpha", "0.7", "--warmup", "10", "--alpha_init", "0.99"])
    assert default_run_id(args) == f"iwrbound-binmnist-sbm-ovis-gamma1-mc1-iw50-seed1-0.7-warmup-{run_hash(args)}"
    plain = parse_args(["--dataset", "gmm", "--estimator", "vimco-arithmetic", "--iw", "5"])
    assert default_run_id(plain) == f"gmm-vimco-arithmetic-mc1-iw5-seed1-{run_hash(plain)}"  # its own model


def test_run_identity_is_what_run_py_uses():
    argv = ["--dataset", "gmm", "--iw", "5", "--seed", "3"]
    run_id, digest = run_identity(argv)
    assert run_id == default_run_id(parse_args(argv)) and digest == run_hash(parse_args(argv))
    assert run_identity(argv + ["--run_id", "given"]) == ("given", digest)


def test_parser_groups_keep_the_original_order():
    titles = [group.title for group in build_parser()._action_groups][2:]
    assert titles == ["base", "run", "model", "active units", "gradient analysis", "session"]


def test_validating_options_leaves_the_random_stream_alone():
    """Checking builds models and estimators (relax's surrogate, tracked neural baselines): a
    library caller's seeded stream must not move."""
    import torch
    torch.manual_seed(0)
    state = torch.get_rng_state()
    parse_args(["--dataset", "binmnist", "--model", "sbm", "--estimator", "relax", "--iw", "1",
                "--track_grad_variances", "nvil,reinforce-baseline,relax"])
    assert torch.equal(torch.get_rng_state(), state)
