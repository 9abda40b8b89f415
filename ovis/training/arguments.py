"""Command-line options of ``run.py``, their validation and the run identity.

Option names and defaults are those of the original code, with these differences:

* ``--data_root`` is searched first, then ``$OVIS_DATA``, then ``./data`` (``ovis.datasets``).
* ``--alpha_init`` has no default: a warm-up (``--warmup N``) must say where alpha starts.
* ``--valid_bs`` is the batch size of the final validation pass (unused in the original).
* ``--depth`` and ``--hdim`` default to the model's own values (``ovis.models.MODEL_DEFAULTS``):
  depth 3 for sbm and 1 for vae / gaussian-vae, hdim 64 for vae and 200 for gaussian-vae. This
  is what the original computed: its vae ignored ``--depth`` and its gaussian-vae ``--hdim``.
* new: ``--device``, ``--resume``, ``--run_id``, ``--au_threshold`` (active-unit threshold,
  1e-2 as in Burda et al.; the original used 1e-3), ``--threads`` (PyTorch CPU threads) and
  ``--checkpoint_interval`` (seconds between checkpoints besides the ones after every evaluation).
* defaults that work on the first try: ``--iw 5`` (the original's 1 is refused by
  OVIS~ and by OVIS-MC without ``-exclusive``, which need two particles); ``--max_eval 1000`` data points per periodic
  evaluation (the original evaluated whole splits: 100,000 GMM points at K = 1000 took minutes
  before the first line; ``--max_eval none`` restores it); ``--grad_key`` defaults to the
  model's inference network (its ``inference_network_prefixes``: ``phi.`` for the GMM, ``A,b``
  for the Gaussian toy).
* every option also accepts dashes (``--iw-test``) and ``--help`` shows every default
  (``ovis.cli.ArgumentParser``).

``validate_args`` refuses, before any work, what the data set, model and estimator registries
would refuse later (unknown names, an estimator that cannot use these ``--iw`` / ``--mc`` or this
model, a ``--grad_key`` matching no parameter), with the fix; it loads no data (it builds the
model on a placeholder data shape), so the queue checks every grid point with it before queueing.

The run identity (which options define a run, its hash) is ``ovis.identity``'s: unlike the
original, ``--nsteps`` and ``--epochs`` are part of it (they set the learning-rate schedule).

Step counts accept a float literal with an integral value (``--nsteps 4e6``,
``--warmup 1000000.0``), since the experiment files print numbers with Python's ``str``.
"""
import argparse
from typing import Dict, Optional, Sequence, Tuple

from ovis.cli import ArgumentError, ArgumentParser, add_run_folder_options, integer_option
from ovis.identity import DATASET_MODELS, MODEL_OPTIONS, run_hash
from ovis.training.compilation import COMPILE_MAX_PARTICLES, COMPILE_MIN_STEPS, COMPILE_SETTINGS
from ovis.training.optim import OPTIMIZERS
from ovis.training.reproduction_options import (ReproductionOptionError, add_reproduction_options,
                                                check_reproduction_options)
from ovis.training.schedules import WARMUP_MODES

NORMALIZATIONS = ("none", "layernorm", "batchnorm")
PRIORS = ("normal", "categorical", "bernoulli")


DEFAULT_IW = 5


class IncompatibleComponents(ArgumentError):
    """Valid options whose estimator does not go with the model (or with ``--compile``): a
    benchmark grid skips the combination instead of failing."""


def _optional(parse):
    def parse_optional(text: str):
        return None if text.strip().lower() in ("none", "null", "") else parse(text)

    parse_optional.__name__ = f"optional {parse.__name__}"
    return parse_optional


def build_parser() -> argparse.ArgumentParser:
    """The ``run.py`` parser; groups in the original's order (base, run, model, active units,
    gradients), then the additions."""
    parser = ArgumentParser(
        prog="run.py", description="Train a latent variable model with an importance-weighted "
                                   "gradient estimator, evaluate it and analyse its gradients.")
    base = parser.add_argument_group("base")
    base.add_argument("--dataset", default="shapes", help="data set name (see ovis.datasets)")
    base.add_argument("--mini", action="store_true", help="subsample 5000/500/500 points")
    add_run_folder_options(base, "sandbox", "data directory, searched before $OVIS_DATA and ./data")
    base.add_argument("--id", default="", help="prefix of the run name")
    base.add_argument("--seed", type=integer_option, default=1, help="random seed")
    base.add_argument("--workers", type=integer_option, default=1,
                      help="data-loading processes; <= 1 loads batches in the training process")
    base.add_argument("--silent", action="store_true",
                      help="print only warnings and failures (progress lines still go to run.log)")
    base.add_argument("--deterministic", action="store_true",
                      help="deterministic algorithms (cuDNN/cuBLAS); resumed runs then reproduce unbroken ones")
    base.add_argument("--sequential_computation", action="store_true",
                      help="evaluate the particles of one data point at a time (lowest memory)")
    base.add_argument("--chunk_rows", type=integer_option, default=0,
                      help="rows (data points x particles) per forward pass of the evaluations and analyses; "
                           "0: chosen from this machine's measured throughput and free memory at the start "
                           "(the drawn particles depend on it: a resumed run keeps its first choice)")

    run = parser.add_argument_group("run")
    run.add_argument("--epochs", type=integer_option, default=-1, help="number of epochs (< 0: derived from --nsteps)")
    run.add_argument("--nsteps", type=integer_option, default=500000, help="number of optimisation steps")
    run.add_argument("--optimizer", default="adam", choices=list(OPTIMIZERS),
                     help="torch.optim optimiser of the model (the estimator's own parameters always use adam)")
    run.add_argument("--lr", type=float, default=2e-3, help="learning rate")
    run.add_argument("--freebits", type=_optional(float), default=None, help="free bits per latent group")
    run.add_argument("--baseline_lr", type=float, default=5e-3,
                     help="learning rate of the estimator's own parameters (Adam), for estimators that own "
                          "parameters (neural baselines, learned control variates)")
    run.add_argument("--bs", type=integer_option, default=32, help="training batch size")
    run.add_argument("--valid_bs", type=integer_option, default=50, help="batch size of the final validation pass")
    run.add_argument("--test_bs", type=integer_option, default=50, help="batch size of the periodic evaluations")
    run.add_argument("--lr_reduce_steps", type=integer_option, default=0, help="number of learning-rate halvings")
    run.add_argument("--only_train_set", action="store_true", help="use the training set for every split")
    run.add_argument("--estimator", default="reinforce",
                     help="estimator id: a registered form (ovis.estimators.registry; a bad id lists them all)")
    run.add_argument("--mc", type=integer_option, default=1, help="outer Monte-Carlo samples M")
    run.add_argument("--iw", type=integer_option, default=DEFAULT_IW,
                     help="importance samples K (at least the estimator's min_iw; a smaller value is refused "
                          "with the smallest that works)")
    run.add_argument("--beta", type=float, default=1.0, help="KL weight beta")
    run.add_argument("--tau", type=float, default=0.0, help="relaxation temperature (0: straight-through)")
    run.add_argument("--alpha", type=float, default=0.0, help="Renyi alpha (final value after a warm-up)")
    run.add_argument("--warmup", type=integer_option, default=0, help="alpha warm-up length in steps (0: off)")
    run.add_argument("--warmup_offset", type=integer_option, default=0, help="step at which the warm-up starts")
    run.add_argument("--warmup_mode", default="log", choices=WARMUP_MODES, help="shape of the alpha warm-up")
    run.add_argument("--alpha_init", type=_optional(float), default=None, help="alpha at the start of the warm-up")
    run.add_argument("--eval_freq", type=integer_option, default=10, help="evaluate every this many epochs")
    run.add_argument("--time_budget", type=_optional(float), default=None,
                     help="stop training once its steps have taken this many seconds (process CPU time on a CPU, "
                          "what a one-thread run takes on an idle machine; wall-clock on CUDA; evaluations "
                          "excluded), then evaluate and validate as at the end; --epochs or --nsteps stays the "
                          "upper bound and sets the learning-rate schedule. For comparisons at equal time")
    run.add_argument("--max_eval", type=_optional(integer_option), default=1000,
                     help="data points per split and periodic evaluation (none: the whole split)")
    run.add_argument("--iw_valid", type=integer_option, default=100, help="K of the final validation bound")
    run.add_argument("--iw_test", type=integer_option, default=1000, help="K of the periodic evaluation bound")

    _add_model_and_analysis_options(parser)
    add_reproduction_options(parser)
    return parser


def _add_model_and_analysis_options(parser: argparse.ArgumentParser) -> None:
    """The model, active-unit, gradient-analysis and session option groups of ``build_parser``."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", default="vae", help="model name (see ovis.models)")
    model.add_argument("--hdim", type=_optional(integer_option), default=None,
                       help="hidden units per deterministic layer (None: the model's, vae 64, gaussian-vae 200, "
                            "gmm 16)")
    model.add_argument("--nlayers", type=integer_option, default=3, help="deterministic hidden layers")
    model.add_argument("--depth", type=_optional(integer_option), default=None,
                       help="stochastic layers (None: the model's, sbm 3, vae and gaussian-vae 1)")
    model.add_argument("--b_nlayers", type=integer_option, default=1, help="hidden layers of the neural baseline")
    model.add_argument("--normalization", default="none", choices=NORMALIZATIONS,
                       help="normalisation of the deterministic layers")
    model.add_argument("--dropout", type=float, default=0.0, help="dropout probability of the deterministic layers")
    model.add_argument("--prior", default="normal", choices=PRIORS, help="latent family of the vae")
    model.add_argument("--N", type=integer_option, default=32, help="latent variables (per layer)")
    model.add_argument("--K", type=integer_option, default=8, help="categories of a categorical latent")
    model.add_argument("--kdim", type=integer_option, default=0, help="key dimension of the key-query head")
    model.add_argument("--learn_prior", action="store_true", help="learn the parameters of p(z)")

    units = parser.add_argument_group("active units")
    units.add_argument("--mc_au_analysis", type=integer_option, default=0, help="MC samples per point (0: skip)")
    units.add_argument("--npoints_au_analysis", type=integer_option, default=1000, help="data points")
    units.add_argument("--au_threshold", type=float, default=1e-2,
                       help="a unit is active when Cov_x(E_q[z|x]) exceeds this (original code: 1e-3)")

    grads = parser.add_argument_group("gradient analysis")
    grads.add_argument("--grad_bs", type=integer_option, default=10, help="data points of the gradient analysis")
    grads.add_argument("--grad_samples", type=integer_option, default=100, help="gradient samples (0: skip)")
    grads.add_argument("--grad_key", default=None,
                       help="comma-separated substrings of the analysed parameters' names (None: the "
                            "model's inference network, e.g. inference_network. for vae and sbm, phi. for gmm)")
    grads.add_argument("--grad_epsilon", type=float, default=1e-15, help="variance threshold and SNR floor")
    grads.add_argument("--track_grad_variances", default="",
                       help="comma-separated estimator ids whose gradient log-variance is measured at every "
                            "evaluation on the gradient batch (metrics grad_log_variance/<id>)")

    session = parser.add_argument_group("session")
    session.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    session.add_argument("--threads", type=integer_option, default=0,
                         help="CPU threads of PyTorch (0: one when the training step is small, e.g. a 3x200 SBN "
                              "at batch 24 and iw <= 15, else PyTorch's default of one per core)")
    session.add_argument("--compile", nargs="?", const="on", default="auto", choices=COMPILE_SETTINGS,
                         help="compile the training step with torch.compile: the estimator's forward pass, sampling "
                              "included, its gradients and the Adam update as one graph (on CUDA replayed as CUDA "
                              "graphs, mode reduce-overhead: untested), and each bound evaluation's chunk pass; "
                              "costs 20 s to 2 minutes of compilation (benchmarks/compiled_step.py). auto "
                              "(default): on where the faster step repays the compilation: runs of at least "
                              f"{COMPILE_MIN_STEPS:,} steps with mc * iw <= {COMPILE_MAX_PARTICLES} whose estimator "
                              "can be compiled (not the REBAR ids that train eta, relax, the double-cv and rodeo "
                              "ids); --compile alone: on")
    session.add_argument("--checkpoint_interval", type=float, default=600.0,
                         help="seconds between checkpoints (besides the one after every evaluation)")


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """Parse and validate; argparse errors exit with code 2, other problems raise ArgumentError."""
    args = build_parser().parse_args(argv)
    args.model = model_name(args)  # the model trained: gmm and gaussian-toy data sets bring their own
    validate_args(args)
    return args


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ArgumentError(message)


def validate_args(args: argparse.Namespace) -> None:
    """Every check that needs no data (``run.py`` runs it before any work, the queue before
    queueing a grid point). Raises ArgumentError saying what to change."""
    from ovis.training.components import check_components  # components imports this module

    check_values(args)
    check_components(args)


def check_values(args: argparse.Namespace) -> None:
    """Ranges of the options and their combinations."""
    for name in ("mc", "iw", "bs", "valid_bs", "test_bs", "iw_test", "iw_valid", "eval_freq",
                 "grad_bs", "N", "K"):
        _check(getattr(args, name) >= 1, f"--{name} must be >= 1, got {getattr(args, name)}")
    for name in ("workers", "threads", "warmup", "warmup_offset", "lr_reduce_steps", "nlayers", "b_nlayers",
                 "kdim", "mc_au_analysis", "seed", "chunk_rows"):
        _check(getattr(args, name) >= 0, f"--{name} must be >= 0, got {getattr(args, name)}")
    for name in ("depth", "hdim"):
        value = getattr(args, name)
        _check(value is None or value >= 1, f"--{name} must be >= 1, got {value}")
    _check(args.epochs >= 0 or args.nsteps >= 1,
           f"--nsteps must be >= 1 when --epochs is derived from it, got {args.nsteps}")
    _check(args.lr > 0 and args.baseline_lr > 0,
           f"--lr and --baseline_lr must be > 0, got {args.lr} and {args.baseline_lr}")
    _check(0 <= args.alpha < 1, f"--alpha must be in [0, 1) (0: IWAE bound, (0, 1): Renyi bound), "
                                f"got {args.alpha}")
    if args.warmup > 0:
        _check(args.alpha_init is not None,
               f"--warmup {args.warmup} needs --alpha_init, the value of alpha at the start of the "
               f"warm-up (the paper uses --alpha_init 0.99 --warmup 1000000 --warmup_mode log)")
        _check(0 <= args.alpha_init < 1, f"--alpha_init must be in [0, 1), got {args.alpha_init}")
    _check(args.beta >= 0, f"--beta must be >= 0, got {args.beta}")
    _check(args.tau >= 0, f"--tau must be >= 0 (0: straight-through), got {args.tau}")
    _check(args.freebits is None or args.freebits >= 0, f"--freebits must be >= 0, got {args.freebits}")
    _check(args.time_budget is None or args.time_budget > 0,
           f"--time_budget must be > 0 seconds (leave it out for no budget), got {args.time_budget}")
    _check(args.bs >= 2 or args.normalization != "batchnorm",
           "--bs 1 with --normalization batchnorm: batch normalisation needs two or more data points per "
           "training batch; use --bs 2 or more, or --normalization layernorm")
    _check(args.bs >= 2 or args.b_nlayers == 0 or not has_neural_baseline(args.estimator),
           f"--estimator {args.estimator} with --bs 1: its neural baseline normalises over the batch "
           f"(--b_nlayers {args.b_nlayers} blocks with batch normalisation); use --bs 2 or more, or "
           f"--b_nlayers 0 (a linear baseline)")
    _check(0 <= args.dropout < 1, f"--dropout must be in [0, 1), got {args.dropout}")
    _check(args.max_eval is None or args.max_eval >= 1, f"--max_eval must be >= 1, got {args.max_eval}")
    _check(args.grad_samples == 0 or args.grad_samples >= 2,
           f"--grad_samples must be 0 (skip) or >= 2 (a variance needs two samples), got {args.grad_samples}")
    _check(args.grad_epsilon > 0, f"--grad_epsilon must be > 0, got {args.grad_epsilon}")
    if args.track_grad_variances:
        from ovis.analysis.grad_variance import parse_tracked_ids
        try:
            parse_tracked_ids(args.track_grad_variances, args.mc, args.iw)
        except ValueError as error:
            raise ArgumentError(str(error)) from None
        _check(args.grad_samples >= 2 or args.grad_variance_mode == "moving",
               f"--track_grad_variances needs --grad_samples >= 2 (the samples of each variance), got "
               f"{args.grad_samples}")
    _check(args.grad_key is None or any(key.strip() for key in args.grad_key.split(",")) or args.grad_samples == 0,
           "--grad_key must name at least one parameter-name substring, e.g. inference_network")
    _check(args.mc_au_analysis == 0 or args.npoints_au_analysis >= 2,
           f"--npoints_au_analysis must be >= 2 (a variance over data points), got {args.npoints_au_analysis}")
    _check(args.au_threshold >= 0, f"--au_threshold must be >= 0, got {args.au_threshold}")
    _check(args.checkpoint_interval > 0, f"--checkpoint_interval must be > 0 seconds, got {args.checkpoint_interval}")
    _check(args.run_id is None or (args.run_id.strip() and "/" not in args.run_id and args.run_id not in (".", "..")),
           f"--run_id must be a plain folder name, got {args.run_id!r}")
    try:
        check_reproduction_options(args, model_name(args))
    except ReproductionOptionError as error:
        raise ArgumentError(str(error)) from None
    forced = DATASET_MODELS.values()
    _check(args.model not in forced or DATASET_MODELS.get(args.dataset) == args.model,
           f"--model {args.model} only goes with --dataset {args.model}")


def has_neural_baseline(estimator_id: str) -> bool:
    """Whether the estimator builds a neural baseline (``baseline_options``); False for an id that
    does not parse (``check_components`` reports it)."""
    from ovis.estimators.config import parse_estimator_id

    try:
        Estimator, _ = parse_estimator_id(estimator_id)
    except ValueError:
        return False
    return bool(Estimator.baseline_options)


def gradient_filter(args: argparse.Namespace, model) -> str:
    """The ``param_filter`` of the gradient analysis: ``--grad_key``, else the model's inference
    network (``TemplateModel.inference_network_prefixes``)."""
    if args.grad_key is not None:
        return args.grad_key
    prefixes = getattr(model, "inference_network_prefixes", None)
    if not prefixes:
        raise ArgumentError(f"--grad_key: {type(model).__name__} declares no inference_network_prefixes; "
                            f"pass --grad_key with substrings of its parameter names (or --grad_samples 0)")
    return ",".join(prefixes)


def model_name(args: argparse.Namespace) -> str:
    """The model actually built: ``gmm`` and ``gaussian-toy`` data sets force their own model."""
    return DATASET_MODELS.get(args.dataset, args.model)


def default_run_id(args: argparse.Namespace) -> str:
    """``[<id>-]<dataset>[-<model>]-<estimator>-mc<M>-iw<K>-seed<seed>[-<alpha>][-warmup]-<hash>``
    (no ``<model>`` for the data sets that bring their own: ``gmm-reinforce-...``)."""
    parts = [args.id] if args.id else []
    parts += [args.dataset] + ([] if args.dataset in DATASET_MODELS else [model_name(args)])
    parts += [args.estimator, f"mc{args.mc}", f"iw{args.iw}", f"seed{args.seed}"]
    if args.alpha > 0:
        parts.append(str(args.alpha))
    if args.warmup > 0:
        parts.append("warmup")
    parts.append(run_hash(args))
    return "-".join(parts)


def run_identity(argv: Sequence[str]) -> Tuple[str, str]:
    """``(run_id, hash)`` of a ``run.py`` argument list, as ``run.py`` itself would use them;
    ``--run_id`` given in ``argv`` takes precedence over the derived name."""
    args = build_parser().parse_args(list(argv))
    return (args.run_id or default_run_id(args)), run_hash(args)


def model_hparams(args: argparse.Namespace) -> Dict:
    """Hyper-parameters ``ovis.models.get_model`` receives (DESIGN 1: run.py option names)."""
    return {name: getattr(args, name) for name in MODEL_OPTIONS}

