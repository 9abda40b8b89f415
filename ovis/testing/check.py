"""Bias and variance of every estimator's gradient against the exact gradient of L_K: the
tables that ``python -m ovis.apps.check`` prints.

Every registered estimator family's example ids are checked (``--estimators``: these ids only),
each in the sections where its capabilities (``ovis.estimators.registry``) give an exact answer;
"unbiased for" is the estimator's own ``unbiased_for``.

1. Discrete model (``EnumerableModel``, float64): the exact mean and
   variance of each score-function / RWS / TVO estimator, by enumerating every tuple of its
   particles, against the exact gradient of L_K (also by enumeration). An unbiased estimator
   shows a relative bias at machine precision.
2. Linear Gaussian model (``LinearGaussianModel``, one latent dimension, float64): Monte-Carlo
   means of the pathwise estimators (and a few score-function ones) against the gradient of L_K
   computed by Gauss-Hermite quadrature over the K reparameterised noises (independent of every
   estimator, so DReG's row can show a bias too), with the Monte-Carlo standard error. The
   quadrature's own error is estimated from a coarser grid and reported.
3. Estimators that control the uniform noise of each draw (``noise_quadrature_nodes``: ARM, DisARM,
   REBAR, RELAX, Gumbel-softmax, ...) on the enumerable model, integrated over their noise
   (``noise_integration``: exact for ARM/DisARM, Gauss-Legendre for the smooth relaxed passes);
   biased ones that read the runtime tau at several temperatures (their bias shrinks with tau).

Relative bias = ||E[g] - grad|| / ||grad|| over the generative (theta) or inference (phi)
parameters; "std" = sqrt of the summed per-coordinate variances of one gradient sample.
"""
import math
import re
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ovis.estimators.config import describe_estimator_id, parse_estimator_id
from ovis.estimators.noise_integration import integrate_estimator, rule_on, thresholds
from ovis.estimators.registry import example_ids
from ovis.testing.models import EnumerableModel, LinearGaussianModel, enumerate_estimator, per_datum_gradients

# Every registered family's example ids (one per canonical id) are checked, each where an exact
# answer exists for it: score-function / RWS / TVO ones (no noise of their own, Bernoulli latents)
# by enumeration, those that draw their own noise by integration over it, the pathwise ones and
# those without Bernoulli latents on the linear Gaussian model. Score-function references there:
GAUSSIAN_REFERENCES = ("reinforce", "vimco-arithmetic", "ovis-gamma1")
TEMPERATURES = (1.0, 0.5, 0.25, 0.1)  # of the biased relaxed estimators that read the runtime tau
NOISE_GRID_POINTS = 50_000  # largest noise grid integrated (ARM iw <= 4, REBAR and relaxed iw = 1)
SLEEP_SAMPLES = 100000


def checked_ids(estimators: Optional[Sequence[str]] = None) -> Tuple[str, ...]:
    """``estimators``, else every registered example id, one per canonical id."""
    first: Dict[str, str] = {}
    for estimator_id in example_ids() if estimators is None else estimators:
        first.setdefault(describe_estimator_id(estimator_id).key, estimator_id)
    return tuple(first.values())


def enumerated_ids(ids: Sequence[str]) -> List[str]:
    return [e for e in ids if _class(e).noise_quadrature_nodes is None and not _class(e).reparam
            and "bernoulli" in _class(e).latent_types]


def noise_integrated_ids(ids: Sequence[str]) -> List[str]:
    return [e for e in ids if _class(e).noise_quadrature_nodes is not None and "bernoulli" in _class(e).latent_types]


def gaussian_ids(ids: Sequence[str]) -> List[str]:
    return [e for e in ids if "gaussian" in _class(e).latent_types and _class(e).noise_quadrature_nodes is None
            and (_class(e).reparam or "bernoulli" not in _class(e).latent_types)]


def _class(estimator_id: str) -> type:
    return parse_estimator_id(estimator_id)[0]


def _build(estimator_id: str, iw: int, x_shape=(4,)):
    """At the smallest mc the estimator is defined for (1, or its ``min_mc``)."""
    Estimator, config = parse_estimator_id(estimator_id)
    return Estimator(mc=Estimator.min_mc, iw=iw, x_shape=x_shape, **config).double()


def _target_iw(unbiased_for: str, iw: int) -> Optional[int]:
    """The K' of the bound whose gradient ``unbiased_for`` names (``∇ L_K``, ``∇ L_{K-2}``, ``∇ ELBO``)."""
    objective = unbiased_for.replace("∇", "").strip()
    if objective == "ELBO":
        return 1
    match = re.fullmatch(r"L_(?:K|\{K-(\d+)\})", objective)
    return None if match is None else max(1, iw - int(match.group(1) or 0))


def _split(grads: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Flatten a ``name -> tensor`` dict into ``{"theta": [Dt], "phi": [Dp]}``."""
    groups = {"theta": "generative_model", "phi": "inference_network"}
    return {key: torch.cat([g.flatten() for name, g in grads.items() if name.startswith(prefix)])
            for key, prefix in groups.items()}


def _relative(error: Tensor, target: Tensor) -> float:
    return (error.norm() / target.norm().clamp(min=1e-300)).item()


def check_enumerable(iws: Sequence[int], seed: int = 0, estimators: Optional[Sequence[str]] = None) -> List[Dict]:
    """Exact bias and variance on the enumerable model; returns one record per (estimator, K)."""
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=seed).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    names, params = zip(*model.named_parameters())

    def gradient(objective: Tensor) -> Dict[str, Tensor]:
        return _split(dict(zip(names, torch.autograd.grad(-objective, params, allow_unused=True))))

    records = []
    for iw in iws:
        exact = gradient(model.exact_iw_bound(x, iw).sum())
        sleep = {"phi": _split({n: (torch.zeros_like(p) if g is None else g) for n, p, g in zip(
            names, params, torch.autograd.grad(-model.exact_sleep_objective(), params, allow_unused=True))})["phi"]}
        for estimator_id in enumerated_ids(checked_ids(estimators)):
            try:
                estimator = _build(estimator_id, iw)
            except ValueError as error:  # e.g. OVIS~ at K = 1
                records.append({"estimator": estimator_id, "iw": iw, "error": str(error)})
                continue
            mean, variance = enumerate_estimator(estimator, model, x)
            mean, variance = _split(mean), _split(variance)
            unbiased_for, target_iw = estimator.unbiased_for, _target_iw(estimator.unbiased_for, iw)
            if unbiased_for == "sleep":  # the sleep phase is sampled: average it over many draws
                mean["phi"] = _gradient_samples(estimator, model, x, SLEEP_SAMPLES)["phi"].mean(0)
            target = sleep if unbiased_for == "sleep" else (
                None if target_iw is None else gradient(model.exact_iw_bound(x, target_iw).sum()))
            records.append({
                "estimator": estimator_id, "iw": iw, "unbiased for": unbiased_for,
                "bias theta": _relative(mean["theta"] - exact["theta"], exact["theta"]),
                "bias phi": _relative(mean["phi"] - exact["phi"], exact["phi"]),
                "cos phi": torch.nn.functional.cosine_similarity(mean["phi"], exact["phi"], dim=0).item(),
                "phi vs target": "-" if target is None else _relative(mean["phi"] - target["phi"], target["phi"]),
                "std phi": variance["phi"].sum().sqrt().item(),
            })
    return records


def _noise_runs(ids: Sequence[str]) -> List[Tuple[str, Optional[float]]]:
    """(id, runtime tau or None): biased estimators whose id sets no temperature at ``TEMPERATURES``."""
    return [(e, tau) for e in noise_integrated_ids(ids)
            for tau in (TEMPERATURES if _class(e).unbiased_for == "biased" and describe_estimator_id(e).parameter("tau")
                        is None else (None,))]


def grid_points(model: EnumerableModel, x: Tensor, iw: int, nodes: int, streams: int) -> int:
    """Points of ``integrate_estimator``'s product rule (``streams`` uniforms per unit and particle)."""
    per_particle = math.prod(len(rule_on(points, nodes)[0]) * nodes ** (streams - 1)
                             for units in thresholds(model, x) for points in units)
    return per_particle ** iw


def check_noise_controlled(iws: Sequence[int], seed: int = 0, estimators: Optional[Sequence[str]] = None) -> List[Dict]:
    """Bias of the noise-controlled estimators on the enumerable model, integrated over their noise
    with their own quadrature nodes, up to ``NOISE_GRID_POINTS`` grid points. Parameters drawn with
    scale 0.5: the relaxed integrands are then smooth enough for 8 Gauss-Legendre nodes (~1e-6)."""
    model = EnumerableModel(x_dim=4, z_dims=(2,), scale=0.5, seed=seed).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    names, params = zip(*model.named_parameters())
    records = []
    for iw in sorted(set([1] + list(iws))):
        exact = _split(dict(zip(names, torch.autograd.grad(-model.exact_iw_bound(x, iw).sum(), params))))
        for estimator_id, tau in _noise_runs(checked_ids(estimators)):
            label = estimator_id if tau is None else f"{estimator_id} tau={tau}"
            estimator = _build(estimator_id, iw)
            nodes = estimator.noise_quadrature_nodes
            points = grid_points(model, x, iw, nodes, estimator.noise_streams)
            if estimator.mc != 1 or points > NOISE_GRID_POINTS:
                records.append({"estimator": label, "iw": iw, "error": f"noise grid of {points} points at mc="
                                f"{estimator.mc} (at most {NOISE_GRID_POINTS}, mc = 1)"})
                continue
            estimator.check_model(model)
            runtime = {} if tau is None else {"tau": tau}
            mean = _split(integrate_estimator(estimator, model, x, nodes=nodes, **runtime))
            records.append({"estimator": label, "iw": iw, "unbiased for": estimator.unbiased_for,
                            "bias theta": _relative(mean["theta"] - exact["theta"], exact["theta"]),
                            "bias phi": _relative(mean["phi"] - exact["phi"], exact["phi"]),
                            "cos phi": torch.nn.functional.cosine_similarity(mean["phi"], exact["phi"], dim=0).item()})
    return records


def _gradient_samples(estimator, model, x: Tensor, n: int) -> Dict[str, Tensor]:
    """``n`` independent gradient samples ``{"theta": [n, Dt], "phi": [n, Dp]}`` from one call."""
    grads = per_datum_gradients(estimator, model, x, n)
    return {key: torch.cat([g.flatten(1) for name, g in grads.items() if name.startswith(prefix)], dim=1)
            for key, prefix in (("theta", "generative_model"), ("phi", "inference_network"))}


# Gauss-Hermite nodes per noise: at most ~400,000 grid points (nodes ** K in one dimension).
QUADRATURE_POINTS, MAX_NODES = 400_000, 120


def quadrature_gradient(model: LinearGaussianModel, x: Tensor, iw: int, nodes: int) -> Dict[str, Tensor]:
    """Gradient of the negative L_K by quadrature, ``{"theta": [Dt], "phi": [Dp]}``."""
    names, params = zip(*model.named_parameters())
    return _split(dict(zip(names, torch.autograd.grad(-model.quadrature_iw_bound(x, iw, nodes).sum(), params))))


def check_linear_gaussian(iws: Sequence[int], samples: int, seed: int = 0,
                          estimators: Optional[Sequence[str]] = None) -> List[Dict]:
    """Monte-Carlo bias of the pathwise estimators against the quadrature gradient of L_K."""
    torch.manual_seed(seed)
    model = LinearGaussianModel(dim=1, seed=seed).double()
    x = torch.tensor([[0.7]], dtype=torch.float64)
    records = []
    for iw in iws:
        nodes = min(MAX_NODES, int(QUADRATURE_POINTS ** (1 / iw)))
        reference = quadrature_gradient(model, x, iw, nodes)
        coarser = quadrature_gradient(model, x, iw, max(2, int(0.8 * nodes)))
        references = GAUSSIAN_REFERENCES if estimators is None else ()
        for estimator_id in gaussian_ids(checked_ids(estimators)) + list(references):
            try:
                estimator = _build(estimator_id, iw, x_shape=tuple(x.shape[1:]))
                grads = _gradient_samples(estimator, model, x, samples)
            except ValueError as error:
                records.append({"estimator": estimator_id, "iw": iw, "error": str(error)})
                continue
            record = {"estimator": estimator_id, "iw": iw, "unbiased for": estimator.unbiased_for}
            for key in ("theta", "phi"):
                target = reference[key]
                difference = grads[key].mean(0) - target
                uncertainty = (grads[key].var(0) / samples).sqrt() + (reference[key] - coarser[key]).abs()
                record[f"bias {key}"] = _relative(difference, target)
                record[f"z {key}"] = (difference.abs() / uncertainty.clamp(min=1e-300)).max().item()
            record["std phi"] = grads["phi"].var(0).sum().sqrt().item()
            record["quadrature error"] = max(_relative(reference[k] - coarser[k], reference[k]) for k in reference)
            records.append(record)
    return records
