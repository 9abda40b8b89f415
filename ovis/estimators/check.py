"""Bias and variance of every estimator's gradient against the exact gradient of L_K.

    python -m ovis.estimators.check [--iw 2 4] [--samples 50000] [--seed 0]

1. Discrete model (``ovis.testing.EnumerableModel``, float64): the exact mean and
   variance of each score-function / RWS / TVO estimator, by enumerating every tuple of its
   particles, against the exact gradient of L_K (also by enumeration). An unbiased estimator
   shows a relative bias at machine precision.
2. Linear Gaussian model (``LinearGaussianModel``, one latent dimension, float64): Monte-Carlo
   means of the pathwise estimators (and a few score-function ones) against the gradient of L_K
   computed by Gauss-Hermite quadrature over the K reparameterised noises (independent of every
   estimator, so DReG's row can show a bias too), with the Monte-Carlo standard error. The
   quadrature's own error is estimated from a coarser grid and reported.
3. Estimators that control the uniform noise of each draw (ARM, DisARM, local DisARM, REBAR,
   dynamic REBAR, RELAX, Gumbel-softmax, straight-through) on the enumerable model, integrated
   over their noise (``noise_integration``: exact for ARM/DisARM, Gauss-Legendre for the smooth
   relaxed passes); the relaxed estimators at several temperatures (their bias shrinks with tau).

Relative bias = ||E[g] - grad|| / ||grad|| over the generative (theta) or inference (phi)
parameters; "std" = sqrt of the summed per-coordinate variances of one gradient sample.
"""
import argparse
import time
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ovis.testing import EnumerableModel, LinearGaussianModel, enumerate_estimator, per_datum_gradients
from .config import parse_estimator_id
from .noise_integration import integrate_estimator

# (id, the objective whose phi gradient the estimator is unbiased for, if any)
ENUMERATED = (
    ("reinforce", "L_K"), ("vimco-arithmetic", "L_K"), ("vimco-geometric", "L_K"),
    ("ovis-S1-exclusive", "L_K"), ("ovis-S2-exclusive", "L_K"), ("ovis-S1", "L_{K-1}"),
    ("ovis-gamma0", "L_K"), ("ovis-gamma0.5", "biased"), ("ovis-gamma1", "biased"),
    ("ovis-gamma1-arithmetic", "biased"), ("ovis-gamma1-geometric", "biased"),
    ("wake-wake", "biased"), ("wake-sleep", "sleep"),
    ("tvo-part1", "ELBO"), ("tvo-part2-config1", "biased"), ("tvo-part5-beta2", "biased"),
    ("nvil", "L_K"), ("reinforce-loo", "L_K"), ("muprop", "L_K"), ("simple-muprop", "L_K"),
)
# (id, unbiased for, runtime tau or None, quadrature nodes, largest iw the grid allows)
NOISE_INTEGRATED = (
    ("arm", "L_K", None, 1, 4), ("disarm", "L_K", None, 1, 4), ("disarm-iw", "L_K", None, 1, 4),
    ("rebar", "L_K", None, 8, 1), ("dynamic-rebar", "L_K", None, 8, 1), ("relax", "L_K", None, 8, 1),
    ("gumbel-softmax", "biased", 1.0, 32, 1), ("gumbel-softmax", "biased", 0.5, 32, 1),
    ("gumbel-softmax", "biased", 0.25, 32, 1), ("gumbel-softmax", "biased", 0.1, 32, 1),
    ("straight-through", "biased", 1.0, 32, 1), ("straight-through", "biased", 0.25, 32, 1),
)
PATHWISE = (("pathwise-iwae", "L_K"), ("dreg", "L_K"), ("stl", "ELBO at K=1"), ("pathwise-vae", "ELBO"),
            ("reinforce", "L_K"), ("vimco-arithmetic", "L_K"), ("ovis-gamma1", "biased"))


SLEEP_SAMPLES = 100000


def _build(estimator_id: str, iw: int, x_shape=(4,)):
    """mc = 1, except reinforce-loo (mc = 2: its baseline is the other outer sample's bound)."""
    Estimator, config = parse_estimator_id(estimator_id)
    return Estimator(mc=2 if estimator_id == "reinforce-loo" else 1, iw=iw, x_shape=x_shape, **config).double()


def _split(grads: Dict[str, Tensor]) -> Dict[str, Tensor]:
    """Flatten a ``name -> tensor`` dict into ``{"theta": [Dt], "phi": [Dp]}``."""
    groups = {"theta": "generative_model", "phi": "inference_network"}
    return {key: torch.cat([g.flatten() for name, g in grads.items() if name.startswith(prefix)])
            for key, prefix in groups.items()}


def _relative(error: Tensor, target: Tensor) -> float:
    return (error.norm() / target.norm().clamp(min=1e-300)).item()


def _row(cells: Sequence, widths: Sequence[int]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def check_enumerable(iws: Sequence[int], seed: int = 0) -> List[Dict]:
    """Exact bias and variance on the enumerable model; returns one record per (estimator, K)."""
    model = EnumerableModel(x_dim=4, z_dims=(2,), seed=seed).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    names, params = zip(*model.named_parameters())

    def gradient(objective: Tensor) -> Dict[str, Tensor]:
        return _split(dict(zip(names, torch.autograd.grad(-objective, params, allow_unused=True))))

    records = []
    for iw in iws:
        exact = gradient(model.exact_iw_bound(x, iw).sum())
        targets = {"L_K": exact, "L_{K-1}": gradient(model.exact_iw_bound(x, max(1, iw - 1)).sum()),
                   "ELBO": gradient(model.exact_iw_bound(x, 1).sum()),
                   "sleep": {"phi": _split({n: (torch.zeros_like(p) if g is None else g) for n, p, g in zip(
                       names, params, torch.autograd.grad(-model.exact_sleep_objective(), params,
                                                          allow_unused=True))})["phi"]}}
        for estimator_id, unbiased_for in ENUMERATED:
            try:
                estimator = _build(estimator_id, iw)
            except ValueError as error:  # e.g. OVIS~ at K = 1
                records.append({"estimator": estimator_id, "iw": iw, "error": str(error)})
                continue
            mean, variance = enumerate_estimator(estimator, model, x)
            mean, variance = _split(mean), _split(variance)
            if unbiased_for == "sleep":  # the sleep phase is sampled: average it over many draws
                mean["phi"] = _gradient_samples(estimator, model, x, SLEEP_SAMPLES)["phi"].mean(0)
            target = targets.get(unbiased_for)
            records.append({
                "estimator": estimator_id, "iw": iw, "unbiased for": unbiased_for,
                "bias theta": _relative(mean["theta"] - exact["theta"], exact["theta"]),
                "bias phi": _relative(mean["phi"] - exact["phi"], exact["phi"]),
                "cos phi": torch.nn.functional.cosine_similarity(mean["phi"], exact["phi"], dim=0).item(),
                "phi vs target": "-" if target is None else _relative(mean["phi"] - target["phi"], target["phi"]),
                "std phi": variance["phi"].sum().sqrt().item(),
            })
    return records


def check_noise_controlled(iws: Sequence[int], seed: int = 0) -> List[Dict]:
    """Bias of the noise-controlled estimators on the enumerable model, integrated over their noise
    (REBAR's grid has 2 noise dimensions per unit and particle: iw = 1 only). Parameters drawn with
    scale 0.5: the relaxed integrands are then smooth enough for 8 Gauss-Legendre nodes (~1e-6)."""
    model = EnumerableModel(x_dim=4, z_dims=(2,), scale=0.5, seed=seed).double()
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    names, params = zip(*model.named_parameters())
    records = []
    for iw in sorted(set([1] + list(iws))):
        exact = _split(dict(zip(names, torch.autograd.grad(-model.exact_iw_bound(x, iw).sum(), params))))
        for estimator_id, unbiased_for, tau, nodes, largest_iw in NOISE_INTEGRATED:
            label = estimator_id if tau is None else f"{estimator_id} tau={tau}"
            if iw > largest_iw:
                records.append({"estimator": label, "iw": iw, "error": f"noise grid too large above iw={largest_iw}"})
                continue
            estimator = _build(estimator_id, iw).double()
            estimator.check_model(model)
            runtime = {} if tau is None else {"tau": tau}
            mean = _split(integrate_estimator(estimator, model, x, nodes=nodes, **runtime))
            records.append({"estimator": label, "iw": iw, "unbiased for": unbiased_for,
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


def check_linear_gaussian(iws: Sequence[int], samples: int, seed: int = 0) -> List[Dict]:
    """Monte-Carlo bias of the pathwise estimators against the quadrature gradient of L_K."""
    torch.manual_seed(seed)
    model = LinearGaussianModel(dim=1, seed=seed).double()
    x = torch.tensor([[0.7]], dtype=torch.float64)
    records = []
    for iw in iws:
        nodes = min(MAX_NODES, int(QUADRATURE_POINTS ** (1 / iw)))
        reference = quadrature_gradient(model, x, iw, nodes)
        coarser = quadrature_gradient(model, x, iw, max(2, int(0.8 * nodes)))
        for estimator_id, unbiased_for in PATHWISE:
            try:
                grads = _gradient_samples(_build(estimator_id, iw, x_shape=tuple(x.shape[1:])), model, x, samples)
            except ValueError as error:
                records.append({"estimator": estimator_id, "iw": iw, "error": str(error)})
                continue
            record = {"estimator": estimator_id, "iw": iw, "unbiased for": unbiased_for}
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


def _print(title: str, records: List[Dict], columns: Sequence[str]) -> None:
    print(f"\n{title}")
    widths = [max([24] + [len(r["estimator"]) for r in records]), 4, 13] + [max(13, len(c)) for c in columns[3:]]
    print(_row(columns, widths))
    for record in records:
        if "error" in record:
            print(_row([record["estimator"], record["iw"], f"n/a: {record['error'][:70]}"], widths[:3]))
            continue
        cells = [record[c] if isinstance(record[c], (str, int)) else f"{record[c]:.2e}" for c in columns]
        print(_row(cells, widths))


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iw", type=int, nargs="+", default=[2, 4], help="numbers of importance samples K")
    parser.add_argument("--samples", type=int, default=50000, help="Monte-Carlo samples (linear Gaussian part)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if min(args.iw) < 1 or args.samples < 2:
        parser.error("--iw values must be >= 1 and --samples >= 2")
    torch.set_num_threads(1)  # tiny tensors: extra threads only add synchronisation
    start = time.time()
    _print("1. Enumerable binary model: exact expectation by enumerating every particle tuple "
           "(relative bias against grad L_K; machine precision = unbiased)",
           check_enumerable(args.iw, args.seed),
           ("estimator", "iw", "unbiased for", "bias theta", "bias phi", "cos phi", "phi vs target", "std phi"))
    _print(f"2. Linear Gaussian model: Monte Carlo with {args.samples} samples against the gradient of L_K by "
           f"Gauss-Hermite quadrature (z = max over coordinates of |difference| / (standard error + quadrature "
           f"error))", check_linear_gaussian(args.iw, args.samples, args.seed),
           ("estimator", "iw", "unbiased for", "bias theta", "z theta", "bias phi", "z phi", "std phi",
            "quadrature error"))
    _print("3. Noise-controlled estimators on the enumerable model, integrated over their noise (exact for "
           "ARM/DisARM, Gauss-Legendre ~1e-6 for REBAR/RELAX; relaxed estimators at temperature tau)",
           check_noise_controlled(args.iw, args.seed),
           ("estimator", "iw", "unbiased for", "bias theta", "bias phi", "cos phi"))
    print(f"\n'phi vs target': relative bias against the gradient of the objective the phi gradient is unbiased "
          f"for (L_K-1: OVIS-MC without -exclusive, ELBO: TVO with one partition, sleep: E_p(x,z)[log q(z|x)], "
          f"whose phi mean is a Monte-Carlo average over {SLEEP_SAMPLES} sleep phases).\n({time.time() - start:.1f} s)")


if __name__ == "__main__":
    main()
