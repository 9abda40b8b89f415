"""The options that let a run train as the REBAR code does (``ovis.training.reproduction_options``):
Adam's betas, the variance-scaling initialisation, the output bias's clip and the sbm's input
centring, each against its formula; the defaults leave the model and the optimiser as they were."""
import math
import re

import pytest
import torch

from ovis.estimators.registry import EstimatorFamily, register_estimator, unregister_estimator
from ovis.estimators.score_function import Reinforce
from ovis.identity import MODEL_OPTIONS, REPRODUCTION_MODEL_OPTIONS
from ovis.models import get_model
from ovis.training.arguments import ArgumentError, build_parser, check_values, model_hparams
from ovis.training.components import make_estimator
from ovis.training.optim import make_optimizer

X_SHAPE = (1, 4, 4)


def _sbm(seed: int = 0, **options):
    torch.manual_seed(seed)
    x_mean = torch.linspace(0, 1, 16).view(X_SHAPE)  # pixel 0 has mean 0, pixel 15 mean 1
    return get_model("sbm", X_SHAPE, x_mean=x_mean, N=300, depth=2, **options), x_mean


def _adam_steps(betas, gradients):
    p = torch.nn.Parameter(torch.zeros(()))
    optimizer = make_optimizer("adam", [p], lr=0.1, betas=betas)
    for g in gradients:
        p.grad = torch.tensor(g)
        optimizer.step()
    return p.item()


def test_adam_betas_give_adams_update_with_those_decay_rates():
    """Kingma & Ba's Algorithm 1 by hand for three gradients; torch's default beta2 gives another value."""
    gradients, (b1, b2), lr = [1.0, -2.0, 0.5, 8.0], (0.8, 0.9), 0.1
    m = v = theta = 0.0
    for t, g in enumerate(gradients, 1):
        m, v = b1 * m + (1 - b1) * g, b2 * v + (1 - b2) * g * g
        theta -= lr * (m / (1 - b1 ** t)) / (math.sqrt(v / (1 - b2 ** t)) + 1e-8)
    assert _adam_steps((b1, b2), gradients) == pytest.approx(theta, rel=1e-5)
    assert _adam_steps(None, gradients) != pytest.approx(theta, rel=1e-4)  # the test tells the betas apart


def test_bad_reproduction_options_get_one_message_before_any_work():
    parser = build_parser()
    for argv, message in [(["--optimizer", "sgd", "--adam_betas", "0.9,0.99"], "sgd, which has no betas"),
                          (["--model", "gmm", "--dataset", "gmm", "--init", "variance-scaling"],
                           "--init does not apply to --model gmm"),
                          (["--model", "vae", "--data_centring", "centred"], "it applies to sbm"),
                          (["--output_bias_clip", "0.7"], "--output_bias_clip must be in (0, 0.5)"),
                          (["--estimator", "nvil", "--rebar_baseline_hdim", "8"],
                           "--rebar_baseline_hdim 8 with --estimator nvil: NVIL takes no input-dependent baseline; "
                           "use --estimator dynamic-rebar or rebar-learned-eta or relax, or --rebar_baseline_hdim 0"),
                          (["--estimator", "rebar", "--rebar_baseline_hdim", "8"],
                           "--rebar_baseline_hdim 8 with --estimator rebar: neural_baseline needs a trained control "
                           "variate (learn=True"),
                          (["--estimator", "relax", "--rebar_baseline_hdim", "-1"],
                           "--rebar_baseline_hdim must be a width >= 0, got -1")]:
        with pytest.raises(ArgumentError, match=message.replace("(", r"\(").replace(")", r"\)")):
            check_values(parser.parse_args(argv))
    with pytest.raises(SystemExit):
        parser.parse_args(["--adam_betas", "0.9"])


class ScoreBaselineEstimator(Reinforce):
    """A plugin-style estimator that declares an input-dependent baseline option of its own."""
    input_baseline_option = "score_baseline"

    def __init__(self, *args, score_baseline: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.score_baseline = score_baseline


def test_the_input_baseline_is_a_capability_not_an_id():
    """``--rebar_baseline_hdim`` goes to any estimator whose class declares ``input_baseline_option``
    (here a registered family of its own), under that option's name; identity and reproduction
    options share one list of model options."""
    family = EstimatorFamily(name="score-baseline", grammar="score-baseline", examples=("score-baseline",),
                             ids={"score-baseline": (ScoreBaselineEstimator, {})},
                             table=(("`score-baseline`", "test", "∇ L_K"),))
    register_estimator(family)
    try:
        args = build_parser().parse_args(["--estimator", "score-baseline", "--rebar_baseline_hdim", "7"])
        check_values(args)
        assert make_estimator(args, X_SHAPE).score_baseline == 7
        args = build_parser().parse_args(["--estimator", "dynamic-rebar", "--rebar_baseline_hdim", "7"])
        assert make_estimator(args, X_SHAPE).baseline[0].out_features == 7
    finally:
        unregister_estimator("score-baseline")
    assert set(REPRODUCTION_MODEL_OPTIONS) <= set(MODEL_OPTIONS)
    assert set(REPRODUCTION_MODEL_OPTIONS) <= set(model_hparams(build_parser().parse_args([])))


def test_default_options_build_the_same_model_as_before():
    """The defaults of the new options change nothing: same weights from the same seed."""
    args = build_parser().parse_args(["--model", "sbm"])
    hparams = {k: v for k, v in model_hparams(args).items() if k in REPRODUCTION_MODEL_OPTIONS}
    plain, _ = _sbm()
    with_defaults, _ = _sbm(**hparams)
    for (name, a), b in zip(plain.state_dict().items(), with_defaults.state_dict().values()):
        assert torch.equal(a, b), name


def test_variance_scaling_draws_truncated_normal_weights_and_zero_biases():
    model, x_mean = _sbm(init="variance-scaling", output_bias_clip=1e-3)
    weight = model.inference_network[0].net.weight  # [300, 16]
    std = math.sqrt(2.6 / 16)
    assert weight.abs().max() <= 2 * std
    # a normal truncated at two standard deviations has standard deviation 0.8796 std
    expected, n = 0.8796 * std, weight.numel()
    assert weight.std().item() == pytest.approx(expected, abs=4 * expected / math.sqrt(2 * n))
    assert torch.equal(model.inference_network[1].net.bias, torch.zeros(300))
    bias = model.generative_model.observation.bias  # logit(clip(mean, 1e-3, 1 - 1e-3))
    assert bias[0].item() == pytest.approx(math.log(1e-3 / (1 - 1e-3)), rel=1e-5)
    assert bias[15].item() == pytest.approx(-math.log(1e-3 / (1 - 1e-3)), rel=1e-5)
    default, _ = _sbm()
    assert default.generative_model.observation.bias[0].item() == pytest.approx(math.log(1e-4 / (1 - 1e-4)), rel=1e-5)
    assert default.inference_network[0].net.weight.abs().max() <= 1 / math.sqrt(16)  # torch's uniform


CENTRINGS = {"centred": lambda x, m: x - m, "shifted": lambda x, m: (x - m + 1) / 2}


@pytest.mark.parametrize("centring", CENTRINGS)
def test_data_centring_feeds_the_inference_network_its_formula(centring):
    """q(z_1 | x)'s logits are the first linear map of the formula's input, not of the other's."""
    model, x_mean = _sbm(data_centring=centring)
    x = torch.bernoulli(torch.full((3, *X_SHAPE), 0.5), generator=torch.Generator().manual_seed(1))
    first = model.inference_network[0].net
    logits = model.infer(x)[-1].logits  # q(z_1 | x): [3, 300]
    for name, formula in CENTRINGS.items():
        matches = torch.allclose(logits, first(formula(x, x_mean).flatten(1)), atol=1e-5)
        assert matches == (name == centring), name


def test_rebar_options_reach_the_estimator_and_bad_ones_get_one_message():
    from ovis.training.components import make_estimator

    parser = build_parser()
    args = parser.parse_args(["--model", "sbm", "--estimator", "dynamic-rebar",
                              "--rebar_options", "same-noise,muprop-relaxation,per-layer,bounded-eta,parameter-objective"])
    check_values(args)
    estimator = make_estimator(args, X_SHAPE)
    assert (estimator.same_noise, estimator.relaxation, estimator.objective, estimator.per_layer) == (
        True, "muprop", "parameters", True)
    assert "parametrizations.eta.original" in dict(estimator.named_parameters())
    default = make_estimator(parser.parse_args(["--model", "sbm", "--estimator", "dynamic-rebar"]), X_SHAPE)
    assert (default.same_noise, default.relaxation, default.objective) == (False, "concrete", "logits")
    for argv, message in (
            (["--estimator", "rebar", "--rebar_options", "bounded-eta"],
             "--rebar_options bounded-eta with --estimator rebar: bounded_eta and variance_objective apply to a "
             "trained control variate (dynamic-rebar, rebar-learned-eta or relax); use --estimator dynamic-rebar "
             "or rebar-learned-eta or relax, or drop --rebar_options"),
            (["--estimator", "nvil", "--rebar_options", "same-noise"],
             "--rebar_options same-noise with --estimator nvil: NVIL takes no --rebar_options; use --estimator "
             "rebar or dynamic-rebar or rebar-learned-eta or relax, or drop --rebar_options"),
            (["--estimator", "nvil", "--track_grad_variances", "muprop,rebar", "--rebar_options", "bounded-eta"],
             "--rebar_options bounded-eta with --estimator nvil and --track_grad_variances muprop,rebar (none "
             "takes it): NVIL takes no --rebar_options"),
            (["--estimator", "dynamic-rebar", "--rebar_options", "same_noise"],
             "--rebar_options same_noise: unknown; allowed same-noise, muprop-relaxation, per-layer, "
             "per-layer-own-score, bounded-eta, parameter-objective")):
        with pytest.raises(ArgumentError, match=re.escape(message)):
            check_values(parser.parse_args(["--model", "sbm", *argv]))


def test_reproduction_estimator_options_reach_the_tracked_estimators_that_take_them():
    """The trained SimpleMuProp takes neither; the tracked dynamic REBAR takes both, the tracked
    NVIL neither: each estimator of the run gets what it takes."""
    from ovis.analysis.grad_variance import MovingVarianceTracker
    from ovis.training.analyses import moving_variance_tracker

    args = build_parser().parse_args([
        "--model", "sbm", "--estimator", "simple-muprop", "--track_grad_variances", "dynamic-rebar,nvil",
        "--grad_variance_mode", "moving", "--rebar_options", "muprop-relaxation,bounded-eta",
        "--rebar_baseline_hdim", "7"])
    check_values(args)
    trained = make_estimator(args, X_SHAPE)
    model = get_model("sbm", X_SHAPE, N=4, depth=2)
    tracker = moving_variance_tracker(args, model, trained, X_SHAPE)
    assert isinstance(tracker, MovingVarianceTracker)
    rebar, nvil = (tracker.estimator(estimator_id, model) for estimator_id in ("dynamic-rebar", "nvil"))
    assert rebar.relaxation == "muprop" and rebar.baseline[0].out_features == 7
    assert "parametrizations.eta.original" in dict(rebar.named_parameters())
    assert not hasattr(nvil, "relaxation") and not trained.learned
