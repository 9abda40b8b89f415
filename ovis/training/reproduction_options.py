"""``run.py`` options that let a run train as another code base does: the optimiser's betas, the
initialisation, output bias and input centring of the VAE-like models, and the gradient variance
of the REBAR code and its estimator's choices (Tucker et al., 2017; README, "The REBAR code's
tables"). Their defaults leave
ovis's behaviour unchanged.
"""
import argparse
from typing import Tuple

from ovis.cli import comma_list
from ovis.models import MODEL_DEFAULTS
from ovis.models.layers import INITIALISATIONS
from ovis.models.vae import DATA_CENTRINGS
from ovis.training.optim import optimizers_with_betas

GRAD_VARIANCE_MODES = ("samples", "moving")
MODEL_OPTIONS = ("init", "output_bias_clip", "data_centring")  # run.py option = model hyper-parameter
# --rebar_options: name -> REBAR's constructor arguments (ovis/estimators/rebar.py); the last two
# train with the control variate, so they need dynamic-rebar or relax
REBAR_OPTIONS = {"same-noise": {"same_noise": True}, "muprop-relaxation": {"relaxation": "muprop"},
                 "per-layer": {"per_layer": True}, "per-layer-own-score": {"own_layer_score": True},
                 "bounded-eta": {"bounded_eta": True},
                 "parameter-objective": {"variance_objective": "parameters"}}
LEARNT_REBAR_OPTIONS = ("bounded-eta", "parameter-objective")


class ReproductionOptionError(ValueError):
    """A reproduction option that does not apply to the run (the caller turns it into its usage error)."""


def betas(text: str) -> Tuple[float, float]:
    """``"0.9,0.99999"`` -> ``(0.9, 0.99999)``."""
    values = tuple(float(value) for value in text.split(","))
    if len(values) != 2 or not all(0 <= value < 1 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r}: expected two decay rates in [0, 1), e.g. 0.9,0.99999")
    return values


def add_reproduction_options(parser: argparse.ArgumentParser) -> None:
    """Into the parser's ``run``, ``model`` and ``gradient analysis`` groups when it has them."""
    groups = {group.title: group for group in parser._action_groups}
    run, model, grads = (groups.get(title, parser) for title in ("run", "model", "gradient analysis"))
    run.add_argument("--adam_betas", type=betas, default=None,
                       help="B1,B2: decay rates of the moment estimates of the model's optimiser and of the "
                            "estimator's own Adam (none: torch's, 0.9,0.999; the REBAR code: 0.9,0.99999)")
    model.add_argument("--init", default="default", choices=INITIALISATIONS,
                       help="initialisation of the linear maps of the VAE-like models: torch's, or the REBAR "
                            "code's variance scaling (truncated normal, std sqrt(2.6 / fan_in), zero biases)")
    model.add_argument("--output_bias_clip", type=float, default=1e-4,
                       help="the output bias of the VAE-like models starts at logit(clip(mean, c, 1 - c)) of "
                            "the training data (the REBAR code: 1e-3)")
    model.add_argument("--data_centring", default="shifted", choices=DATA_CENTRINGS,
                       help="input of the sbm's inference network: (x - mean + 1) / 2 (shifted, TVO and OVIS) "
                            "or x - mean (centred, the REBAR code)")
    run.add_argument("--rebar_baseline_hdim", type=int, default=0,
                       help="> 0: dynamic-rebar and relax subtract an input-dependent baseline b(x) (one hidden "
                            "layer of this width, trained by their variance objective) from the score term's "
                            "coefficient, as the REBAR code's REBAR does (it uses 100); 0: none")
    run.add_argument("--rebar_options", type=comma_list, default=[],
                     help=f"comma list of the REBAR code's estimator choices for rebar, dynamic-rebar and relax "
                          f"(none by default): same-noise (the conditional noise u~ is u itself), "
                          f"muprop-relaxation (sigmoid((a + logit u) / lam + a lam / (lam + 1))), per-layer (one "
                          f"control variate per layer, the layers drawn before it hard), per-layer-own-score "
                          f"(per-layer with the REBAR code's pairing of each with its own layer's score: biased), "
                          f"bounded-eta "
                          f"(eta = 2 sigmoid(v)) and parameter-objective (eta, lam and the baseline minimise the "
                          f"mean squared minibatch gradient of all model parameters); allowed: "
                          f"{', '.join(REBAR_OPTIONS)}")
    grads.add_argument("--grad_variance_mode", default="samples", choices=GRAD_VARIANCE_MODES,
                       help="--track_grad_variances: samples = grad_log_variance/<id> from --grad_samples "
                            "draws at each evaluation; moving = the REBAR code's: at every training step, "
                            "on the training batch, moving averages of each estimator's gradient and squared "
                            "gradient give online:grad_moving_variance/<id>, the mean over the parameters "
                            "(--grad_key) of avg(g^2) - (mean over the estimators of avg(g))^2, averaged "
                            "between evaluations")
    grads.add_argument("--grad_variance_decay", type=float, default=0.999,
                       help="decay of the moving averages of --grad_variance_mode moving")


def check_reproduction_options(args: argparse.Namespace, model: str) -> None:
    """Raises ReproductionOptionError for a value out of range or an option the run would ignore."""
    if args.adam_betas is not None and args.optimizer not in optimizers_with_betas():
        raise ReproductionOptionError(f"--adam_betas with --optimizer {args.optimizer}, which has no betas; "
                                      f"choose one of {', '.join(optimizers_with_betas())} or drop --adam_betas")
    if not 0 < args.output_bias_clip < 0.5:
        raise ReproductionOptionError(f"--output_bias_clip must be in (0, 0.5), got {args.output_bias_clip}")
    if args.rebar_baseline_hdim < 0 or (args.rebar_baseline_hdim and args.estimator not in ("dynamic-rebar", "relax")):
        raise ReproductionOptionError(f"--rebar_baseline_hdim {args.rebar_baseline_hdim}: a width >= 0, used by "
                                      f"--estimator dynamic-rebar or relax (got --estimator {args.estimator})")
    check_rebar_options(args.rebar_options, args.estimator)
    if not 0 < args.grad_variance_decay < 1:
        raise ReproductionOptionError(f"--grad_variance_decay must be in (0, 1), got {args.grad_variance_decay}")
    defaults = {action.dest: action.default for action in _defaults_parser()._actions}
    for name in MODEL_OPTIONS:
        if getattr(args, name) != defaults[name] and name not in MODEL_DEFAULTS.get(model, {}):
            users = [m for m, hparams in MODEL_DEFAULTS.items() if name in hparams]
            raise ReproductionOptionError(f"--{name} does not apply to --model {model}; it applies to "
                                          f"{', '.join(users)}")


def check_rebar_options(names, estimator: str) -> None:
    unknown = [name for name in names if name not in REBAR_OPTIONS]
    learnt = [name for name in names if name in LEARNT_REBAR_OPTIONS]
    if unknown or (names and estimator not in ("rebar", "dynamic-rebar", "relax")) or (
            learnt and estimator == "rebar"):
        raise ReproductionOptionError(f"--rebar_options {','.join(names)} with --estimator {estimator}: allowed "
                                      f"{', '.join(REBAR_OPTIONS)} with rebar, dynamic-rebar or relax "
                                      f"({', '.join(LEARNT_REBAR_OPTIONS)}: dynamic-rebar or relax only)")


def rebar_constructor_options(names) -> dict:
    """The REBAR constructor's arguments of ``--rebar_options``."""
    return {key: value for name in names for key, value in REBAR_OPTIONS[name].items()}


def _defaults_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add_reproduction_options(parser)
    return parser
