"""The analyses computed at every periodic evaluation, logged under the ``train`` split.

Each analysis is a function ``(context: AnalysisContext, runtime: dict) -> dict`` of metric
values (``active_units/au``, ``grads/snr``, ...); ``runtime`` holds the call-time estimator
options of the current step (alpha from its schedule, beta, tau, freebits). ``ANALYSES`` lists
them in the order they run, all on the evaluation's forked RNG (so switching one on or off never
changes the training trajectory). To add an analysis, write such a function (it returns ``{}``
when its option switches it off) and append it to ``ANALYSES``. The analysed parameters are
``gradient_filter(context.args, context.model)`` (``--grad_key`` defaults to ``None``: the
model's inference network).
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import torch
from torch import nn

from ovis.analysis.active_units import active_units
from ovis.analysis.grad_variance import GradientVarianceTracker, MovingVarianceTracker, parse_tracked_ids
from ovis.analysis.gradients import gradient_statistics
from ovis.training.arguments import gradient_filter
from ovis.training.reproduction_options import reproduction_constructor_options

# Bytes of gradient samples held at once by the gradient analysis: wide vmap batches on a GPU,
# little memory on a CPU, where samples are drawn one at a time anyway (the samples of an SBN's
# inference network then take two passes).
GPU_SAMPLE_MEMORY, CPU_SAMPLE_MEMORY = 512 * 2 ** 20, 2 * 2 ** 20


@dataclass
class AnalysisContext:
    """What the analyses see: the parsed options, the model and training estimator (in eval
    mode), the fixed data subsets of ``Trainer.subsets`` and the evaluation chunk size."""
    args: object
    model: nn.Module
    estimator: nn.Module
    subsets: Dict
    device: torch.device
    chunk_rows: Optional[int] = None
    state: Dict = field(default_factory=dict)  # what an analysis keeps between evaluations


def active_units_analysis(context: AnalysisContext, runtime: Dict) -> Dict[str, float]:
    """``active_units/*`` (Burda et al. 2016) with ``--mc_au_analysis`` samples per point; 0 skips."""
    args = context.args
    if args.mc_au_analysis <= 0:
        return {}
    batches = context.subsets["active-units"].batches(args.test_bs, context.device)
    rows = {"max_rows": context.chunk_rows} if context.chunk_rows else {}
    return active_units(context.model, batches, args.mc_au_analysis, args.npoints_au_analysis,
                        threshold=args.au_threshold, **rows).summary


def gradient_analysis(context: AnalysisContext, runtime: Dict) -> Dict[str, float]:
    """``grads/*`` and ``snr/*`` of the training estimator over ``--grad_samples`` samples on
    ``--grad_bs`` points, for the parameters matched by ``--grad_key`` (default: the model's
    inference network); 0 samples skips."""
    args = context.args
    if args.grad_samples <= 0:
        return {}
    x = torch.cat(list(context.subsets["gradients"].batches(args.grad_bs, context.device)))  # [grad_bs, *x_shape]
    # vmap over many samples at once pays off on GPUs; on CPUs a loop is as fast and leaner
    cuda = context.device.type == "cuda"
    statistics = gradient_statistics(context.estimator, context.model, x, args.grad_samples,
                                     gradient_filter(args, context.model),
                                     epsilon=args.grad_epsilon, vectorize=cuda,
                                     sample_memory=GPU_SAMPLE_MEMORY if cuda else CPU_SAMPLE_MEMORY, **runtime)
    return statistics.summary


def grad_variance_analysis(context: AnalysisContext, runtime: Dict) -> Dict[str, float]:
    """``grad_log_variance/<id>`` of every estimator of ``--track_grad_variances`` on the gradient
    batch (``ovis/analysis/grad_variance.py``); the tracker, with its estimators, lives in
    ``context.state`` across evaluations. Empty list or 0 samples skips."""
    args = context.args
    if not getattr(args, "track_grad_variances", "") or args.grad_samples <= 0 or moving_mode(args):
        return {}
    x = torch.cat(list(context.subsets["gradients"].batches(args.grad_bs, context.device)))  # [grad_bs, *x_shape]
    if "grad_variances" not in context.state:
        ids = parse_tracked_ids(args.track_grad_variances, args.mc, args.iw)
        context.state["grad_variances"] = GradientVarianceTracker(
            ids, args.mc, args.iw, x.shape[1:], training={args.estimator: context.estimator},
            estimator_options=functools.partial(reproduction_constructor_options, args))
    return context.state["grad_variances"](context.model, x, args.grad_samples, gradient_filter(args, context.model),
                                           **runtime)


def moving_mode(args) -> bool:
    return bool(getattr(args, "track_grad_variances", "")) and getattr(args, "grad_variance_mode", "") == "moving"


def moving_variance_tracker(args, model: torch.nn.Module, estimator: torch.nn.Module,
                            x_shape) -> Optional[MovingVarianceTracker]:
    """The tracker of ``--grad_variance_mode moving`` (called at every training step), else None."""
    if not moving_mode(args):
        return None
    ids = parse_tracked_ids(args.track_grad_variances, args.mc, args.iw)
    return MovingVarianceTracker(ids, args.mc, args.iw, x_shape, {args.estimator: estimator}, model,
                                 gradient_filter(args, model), decay=args.grad_variance_decay,
                                 lr=args.baseline_lr, betas=args.adam_betas,
                                 estimator_options=functools.partial(reproduction_constructor_options, args))


ANALYSES: List[Callable[[AnalysisContext, Dict], Dict[str, float]]] = [active_units_analysis, gradient_analysis,
                                                                       grad_variance_analysis]


def run_analyses(context: AnalysisContext, runtime: Dict) -> Dict[str, float]:
    """The values of every analysis of ``ANALYSES``, merged."""
    values: Dict[str, float] = {}
    for analysis in ANALYSES:
        values.update(analysis(context, runtime))
    return values
