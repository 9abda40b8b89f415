"""The option conventions: ``run.py --help`` shows every default,
every underscored option has a dashed alias, the defaults work for every model and estimator,
and what cannot work is refused before any work, with the fix."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ovis import exit_codes
from ovis.estimators.config import EXAMPLE_IDS, parse_estimator_id
from ovis.estimators.exact import ExactEnumeration
from ovis.estimators.muprop import MuProp
from ovis.estimators.relaxed import Relaxed
from ovis.records import read_metrics
from ovis.training.arguments import ArgumentError, build_parser, parse_args, validate_args
from ovis.apps.train import main

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = os.environ.get("OVIS_DATA") or str(REPO.parent / "shared" / "data")
# the model families; ``vae`` with Bernoulli latents has no pathwise gradient, like sbm and gmm
SETUPS = {"vae": ["--dataset", "binmnist"], "vae-categorical": ["--dataset", "shapes", "--prior", "categorical"],
          "vae-bernoulli": ["--dataset", "shapes", "--prior", "bernoulli"],
          "gaussian-vae": ["--dataset", "binmnist", "--model", "gaussian-vae"],
          "sbm": ["--dataset", "binmnist", "--model", "sbm"], "gmm": ["--dataset", "gmm"],
          "gaussian-toy": ["--dataset", "gaussian-toy"]}
# the latent type of each setup's model; Bernoulli and index-valued latents have no pathwise gradient
LATENTS = {"vae": "gaussian", "vae-categorical": "categorical", "vae-bernoulli": "bernoulli",
           "gaussian-vae": "gaussian", "sbm": "bernoulli", "gmm": "categorical", "gaussian-toy": "gaussian"}
DISCRETE = {"vae-bernoulli", "sbm", "gmm"}
PATHWISE = {e for e in EXAMPLE_IDS if parse_estimator_id(e)[0].reparam}
# MuProp's mean-field pass puts the mean of q in place of a sample, relaxed estimators relax one-hot
# categorical latents: neither is for the GMM's cluster index
MEAN_FIELD = {e for e in EXAMPLE_IDS if parse_estimator_id(e)[0] is MuProp}
ONE_HOT = {e for e in EXAMPLE_IDS if parse_estimator_id(e)[0] is Relaxed}
INDEX_VALUED = {"gmm"}
# exact enumerates every latent state: no model here is small enough; estimators of one stochastic
# layer refuse the 3-layer sbm, and the factorised ones the GMM's index-valued cluster
ENUMERATING = {e for e in EXAMPLE_IDS if parse_estimator_id(e)[0] is ExactEnumeration}
ONE_LAYER = {e for e in EXAMPLE_IDS if getattr(parse_estimator_id(e)[0], "max_groups", None) == 1}
MULTI_LAYER = {"sbm"}


def estimator_options(estimator):
    """``--estimator`` with the smallest ``--mc`` it is defined for."""
    return ["--estimator", estimator, "--mc", str(parse_estimator_id(estimator)[0].min_mc)]


def test_help_shows_every_default_and_every_dashed_alias():
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100")
    done = subprocess.run([sys.executable, str(REPO / "run.py"), "--help"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0
    # one block per option: its names, then its help (on the same line or the next ones)
    blocks = [" ".join(block.split()) for block in re.split(r"\n(?=  -)", done.stdout) if block.startswith("  --")]
    actions = [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]
    assert len(blocks) == len(actions) > 60
    for block in blocks:
        assert block.count("(default: ") == 1, block
        names = block.split()[0].rstrip(",")
        if "_" in names:
            assert names.replace("_", "-") in block, block
    shown = {block.split()[0].rstrip(","): block for block in blocks}
    for name, default in (("--iw", "5"), ("--lr", "0.002"), ("--estimator", "reinforce"), ("--grad_key", "None"),
                          ("--iw_test", "1000"), ("--max_eval", "1000"), ("--warmup", "0")):
        assert f"(default: {default})" in shown[name], shown[name]
    assert "alpha warm-up" in shown["--warmup"]


def test_dashed_aliases_are_accepted_for_every_underscored_option():
    args = parse_args(["--iw-test", "7", "--grad-key", "phi", "--dataset", "gmm", "--max-eval", "none"])
    assert (args.iw_test, args.grad_key, args.max_eval) == (7, "phi", None)
    assert parse_args(["--iw_test", "7"]).iw_test == 7


def test_the_flagship_estimator_works_with_the_default_iw():
    args = parse_args(["--estimator", "ovis-gamma1"])
    assert args.iw >= 2 and args.grad_key is None


@pytest.mark.parametrize("setup", sorted(SETUPS))
def test_every_estimator_either_passes_or_is_refused_with_the_fix(setup):
    refused = {}
    for estimator in EXAMPLE_IDS:
        try:
            parse_args(SETUPS[setup] + estimator_options(estimator))
        except ArgumentError as error:
            refused[estimator] = str(error)
    other_latents = {e for e in EXAMPLE_IDS if LATENTS[setup] not in parse_estimator_id(e)[0].latent_types}
    mean_field = MEAN_FIELD if setup in INDEX_VALUED else set()
    one_hot = ONE_HOT if setup in INDEX_VALUED else set()
    pathwise = PATHWISE if setup in DISCRETE else set()
    too_many_states = ENUMERATING - other_latents
    too_deep = ONE_LAYER - other_latents if setup in MULTI_LAYER else set()
    index_valued = (ONE_LAYER | ENUMERATING) - other_latents if setup in INDEX_VALUED else set()
    assert set(refused) == pathwise | other_latents | mean_field | one_hot | too_many_states | too_deep | index_valued
    for estimator, message in refused.items():
        assert message.startswith(f"--estimator {estimator} with --model ")
        fix = "use a score-function estimator such as ovis-gamma1" if estimator in pathwise else \
            f"has {LATENTS[setup]} latents: use a model with" if estimator in other_latents else \
            "use another estimator (e.g. ovis-gamma1" if estimator in mean_field else \
            "use a model with prior='bernoulli'" if estimator in one_hot else \
            "the model has other latents: use a model with --prior bernoulli" if estimator in index_valued else \
            "use --depth 1" if estimator in too_deep else \
            "more than max_" if estimator in too_many_states else \
            "use a score-function estimator such as ovis-gamma1"
        assert fix in message


@pytest.mark.parametrize("argv, message", [
    (["--estimator", "ovis-gamma1", "--iw", "1"], "--estimator ovis-gamma1 with --mc 1 --iw 1: "),
    (["--estimator", "ovis-S1", "--iw", "1"], "needs iw >= 2, got iw=1; use ovis-S<S>-exclusive; --iw 2 works"),
    (["--estimator", "ovis-gamma1", "--iw", "1"], "; --iw 2 works"),
    (["--dataset", "gmm", "--grad_key", "encoder"], "matches no trainable parameter; the model has: log_theta"),
    (["--model", "sbm", "--dataset", "binmnist", "--estimator", "dreg"], "use a score-function estimator"),
    (["--dataset", "cifar"], "--dataset 'cifar': unknown data set; one of binmnist"),
    (["--model", "vae", "--K", "1", "--prior", "categorical"], "--model vae: K=1: expected an integer >= 2"),
    (["--estimator", "nvil", "--bs", "1"], "use --bs 2 or more, or --b_nlayers 0"),
    (["--normalization", "batchnorm", "--bs", "1"], "use --bs 2 or more, or --normalization layernorm"),
    (["--model", "sbm", "--dataset", "binmnist", "--estimator", "relax", "--iw", "1", "--compile"],
     "--compile with --estimator relax: eta and the temperature (and relax's surrogate) are trained by "
     "differentiating the backward pass inside the training call (double backward), which torch.compile does not "
     "support; drop --compile"),
    (["--model", "sbm", "--dataset", "binmnist", "--estimator", "dynamic-rebar", "--iw", "1", "--compile"],
     "drop --compile"),
    (["--model", "vae", "--dataset", "binmnist", "--estimator", "dreg", "--freebits", "0.5"],
     "--estimator dreg with --alpha 0.0 --beta 1.0 --tau 0.0 --freebits 0.5: dreg does not support free bits"),
    (["--model", "vae", "--dataset", "binmnist", "--estimator", "dreg", "--track_grad_variances", "nvil,relax"],
     "--track_grad_variances relax with --model vae: REBAR accepts bernoulli latents, but HierarchicalVAE has "
     "gaussian latents: use a model with bernoulli latents"),
])
def test_incompatible_options_exit_2_before_any_work(tmp_path, capsys, argv, message):
    short = ["--epochs", "0", "--iw_test", "2", "--iw_valid", "2", "--max_eval", "10"]  # were it accepted
    assert main(["--root", str(tmp_path)] + short + argv) == exit_codes.BAD_ARGUMENTS
    assert message in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_validate_args_checks_a_parsed_grid_point_without_data():
    """The queue parses a grid point with the parser, then validates it (no data loaded)."""
    args = build_parser().parse_args(["--estimator", "ovis-gamma1", "--iw", "1", "--data_root", "/nonexistent"])
    with pytest.raises(ArgumentError, match="--iw 2 works"):
        validate_args(args)
    args.iw = 2
    validate_args(args)


def test_a_default_gmm_run_evaluates_a_bounded_subset_and_analyses_phi(tmp_path):
    """Defaults but the length: 1000 of the 100,000 training points per evaluation (the whole split
    took minutes before the first line), the gradient analysis on the GMM's own q (phi.)."""
    argv = ["--root", str(tmp_path), "--exp", "e", "--run_id", "r", "--dataset", "gmm", "--estimator", "ovis-gamma1",
            "--nsteps", "2", "--bs", "50000", "--iw_test", "10", "--data_root", DATA_ROOT, "--silent"]
    assert main(argv) == exit_codes.SUCCESS
    run_dir = tmp_path / "e" / "r"
    log = (run_dir / "run.log").read_text()
    assert "L_K with K=10 on 1000 train and 100 test points, gradient statistics from 100 samples on 10 points" in log
    metrics = read_metrics(str(run_dir))
    assert {"train:grads/snr", "train:gmm/posterior_distance"} <= set(metrics.metric)
    assert set(metrics[metrics.metric == "test:info/iters"].value) == {2.0}  # 100 test points in batches of 50


@pytest.mark.slow
@pytest.mark.parametrize("setup, estimator", [(setup, estimator) for setup in sorted(SETUPS) for estimator in EXAMPLE_IDS
                                              if not (setup in DISCRETE and estimator in PATHWISE)])
def test_every_accepted_combination_trains_with_the_defaults(tmp_path, setup, estimator):
    """Defaults (model sizes, iw, grad_key) with a short run and small evaluations; a combination that
    ``parse_args`` refuses (the refusals are checked above) exits 2 before any work."""
    short = ["--mini", "--nsteps", "3", "--bs", "1000", "--max_eval", "20", "--iw_test", "5", "--iw_valid", "3",
             "--grad_samples", "2", "--grad_bs", "2", "--test_bs", "20", "--silent", "--data_root", DATA_ROOT]
    argv = SETUPS[setup] + estimator_options(estimator) + ["--root", str(tmp_path)] + short
    try:
        parse_args(argv)
    except ArgumentError:
        assert main(argv) == exit_codes.BAD_ARGUMENTS and not os.listdir(tmp_path)
        return
    assert main(argv) == exit_codes.SUCCESS
