"""``run.py`` options that let a run train as another code base does: the optimiser's betas, the
initialisation, output bias and input centring of the VAE-like models, and the gradient variance
of the REBAR code and its estimator's choices (Tucker et al., 2017; README, "The REBAR code's
tables"). Their defaults leave
ovis's behaviour unchanged.
"""
import argparse
from typing import Callable, Optional, Tuple

from ovis.cli import comma_list
from ovis.identity import REPRODUCTION_MODEL_OPTIONS
from ovis.models import MODEL_DEFAULTS
from ovis.models.layers import INITIALISATIONS
from ovis.models.vae import DATA_CENTRINGS
from ovis.training.optim import optimizers_with_betas

GRAD_VARIANCE_MODES = ("samples", "moving")
# --rebar_options: name -> REBAR's constructor arguments (ovis/estimators/rebar.py); the last two
# train with the control variate, so they need dynamic-rebar, rebar-learned-eta or relax
REBAR_OPTIONS = {"same-noise": {"same_noise": True}, "muprop-relaxation": {"relaxation": "muprop"},
                 "per-layer": {"per_layer": True}, "per-layer-own-score": {"own_layer_score": True},
                 "bounded-eta": {"bounded_eta": True},
                 "parameter-objective": {"variance_objective": "parameters"}}


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
                       help="> 0: the estimators of the run, trained or tracked, that take an input-dependent "
                            "baseline (dynamic-rebar, rebar-learned-eta, relax) subtract b(x) (one hidden layer of "
                            "this width, trained by their variance objective) from the score term's coefficient, "
                            "as the REBAR code's REBAR does (it uses 100); 0: none")
    run.add_argument("--rebar_options", type=comma_list, default=[],
                     help=f"comma list of the REBAR code's estimator choices for the estimators of the run, "
                          f"trained or tracked, that take them (rebar, dynamic-rebar, rebar-learned-eta, relax; "
                          f"none by default): same-noise (the conditional noise u~ is u itself), "
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
    tracked = comma_list(getattr(args, "track_grad_variances", ""))
    check_input_baseline(args.rebar_baseline_hdim, args.estimator, tracked)
    check_rebar_options(args.rebar_options, args.estimator, tracked)
    if not 0 < args.grad_variance_decay < 1:
        raise ReproductionOptionError(f"--grad_variance_decay must be in (0, 1), got {args.grad_variance_decay}")
    defaults = {action.dest: action.default for action in _defaults_parser()._actions}
    for name in REPRODUCTION_MODEL_OPTIONS:
        if getattr(args, name) != defaults[name] and name not in MODEL_DEFAULTS.get(model, {}):
            users = [m for m, hparams in MODEL_DEFAULTS.items() if name in hparams]
            raise ReproductionOptionError(f"--{name} does not apply to --model {model}; it applies to "
                                          f"{', '.join(users)}")


def _refusal(Estimator, config: dict, extra: Optional[dict], option: str) -> Optional[str]:
    """Why ``Estimator`` does not take the constructor arguments ``extra`` (None: it declares no
    ``option``), or None when it constructs with them."""
    if extra is None:
        return f"{Estimator.__name__} takes no {option}"
    try:
        Estimator(mc=Estimator.min_mc, iw=Estimator.min_iw, x_shape=(1,), **{**config, **extra})
    except TypeError:  # an unexpected keyword argument
        return f"{Estimator.__name__} takes no {option}"
    except ValueError as error:
        return str(error)
    return None


def constructor_option_error(estimator_id: str, extra: Callable[[type], Optional[dict]], option: str,
                             undo: str) -> Optional[str]:
    """Why the estimator refuses the constructor arguments ``extra(Estimator)`` of ``option``, with
    the example ids that take them and ``undo`` (the option to drop); None when it takes them or
    the id does not parse (the component check reports that)."""
    from ovis.estimators.config import EXAMPLE_IDS, parse_estimator_id

    def refusal(identifier: str) -> Optional[str]:
        Estimator, config = parse_estimator_id(identifier)
        return _refusal(Estimator, config, extra(Estimator), option)

    try:
        problem = refusal(estimator_id)
    except ValueError:
        return None
    if problem is None:
        return None
    takers = [e for e in EXAMPLE_IDS if refusal(e) is None]
    return f"{problem}; use --estimator {' or '.join(takers)}, or {undo}"


def input_baseline_error(width: int, estimator_id: str) -> Optional[str]:
    """Why the estimator cannot take an input-dependent baseline of this width (its capability
    ``input_baseline_option``, and its constructor's refusal); None when it can."""
    if not width:
        return None
    return constructor_option_error(
        estimator_id, lambda E: None if E.input_baseline_option is None else {E.input_baseline_option: width},
        "input-dependent baseline", "--rebar_baseline_hdim 0")


def _refused_by_all(problem: Callable[[str], Optional[str]], option: str, estimator_id: str, tracked) -> None:
    """Raises when the trained estimator refuses ``option`` (``problem(id)``) and no tracked one takes it:
    the option applies to every estimator of the run that takes it."""
    refusal = problem(estimator_id)
    if refusal and not any(problem(other) is None for other in tracked):
        where = f" and --track_grad_variances {','.join(tracked)} (none takes it)" if tracked else ""
        raise ReproductionOptionError(f"{option} with --estimator {estimator_id}{where}: {refusal}")


def check_input_baseline(width: int, estimator_id: str, tracked=()) -> None:
    """``--rebar_baseline_hdim``: a width >= 0 that the estimator or a tracked one takes
    (``input_baseline_error``)."""
    if width < 0:
        raise ReproductionOptionError(f"--rebar_baseline_hdim must be a width >= 0, got {width}")
    _refused_by_all(lambda e: input_baseline_error(width, e), f"--rebar_baseline_hdim {width}", estimator_id, tracked)


def check_rebar_options(names, estimator_id: str, tracked=()) -> None:
    """``--rebar_options``: known names whose constructor arguments the estimator or a tracked one takes."""
    unknown = [name for name in names if name not in REBAR_OPTIONS]
    if unknown:
        raise ReproductionOptionError(f"--rebar_options {','.join(unknown)}: unknown; allowed "
                                      f"{', '.join(REBAR_OPTIONS)}")
    if names:
        _refused_by_all(lambda e: constructor_option_error(e, lambda E: rebar_constructor_options(names),
                                                           "--rebar_options", "drop --rebar_options"),
                        f"--rebar_options {','.join(names)}", estimator_id, tracked)


def reproduction_constructor_options(args: argparse.Namespace, Estimator, config: dict) -> dict:
    """``--rebar_baseline_hdim`` and ``--rebar_options`` as constructor arguments of ``Estimator`` (with
    its id's ``config``), each where the class takes it: they apply to the trained and the tracked
    estimators alike (``check_reproduction_options`` refuses them when no estimator of the run takes them)."""
    width, names = getattr(args, "rebar_baseline_hdim", 0), getattr(args, "rebar_options", [])
    candidates = [{Estimator.input_baseline_option: width} if width and Estimator.input_baseline_option else None,
                  rebar_constructor_options(names) if names else None]
    extra: dict = {}
    for candidate in candidates:
        if candidate is not None and _refusal(Estimator, config, candidate, "") is None:
            extra.update(candidate)
    return extra


def rebar_constructor_options(names) -> dict:
    """The REBAR constructor's arguments of ``--rebar_options``."""
    return {key: value for name in names for key, value in REBAR_OPTIONS[name].items()}


def _defaults_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    add_reproduction_options(parser)
    return parser
