"""Exact expectations of the noise-controlled estimators (ARM, DisARM, REBAR, RELAX, relaxed) on
the enumerable binary model, by integrating over their uniform noise.

Each unit's noise ``u`` enters the hard draws only through the thresholds ``sigmoid(+-a)``
(``a`` its logit under any configuration of the parents); between them the estimators are
constant (DisARM), linear (ARM) or smooth (the relaxed passes of REBAR) in ``u``. A
Gauss-Legendre rule with ``nodes`` points on every interval between thresholds, in product over
all units of all particles (and over REBAR's second noise ``v``), is exact for ARM and DisARM
with one node and converges fast for the smooth integrands.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import Tensor, nn


def thresholds(model: nn.Module, x: Tensor) -> List[List[Tensor]]:
    """Per group g, the sorted thresholds ``[T_g]`` of every unit: sigmoid(+-a) for every parent state."""
    states = model.latent_states()  # per group [S, d_g]
    S = states[0].shape[0]
    qz = model.infer(x.expand(S, -1), z=states)
    result = []
    for q in qz:
        probs = torch.sigmoid(q.logits.detach())  # [S, d_g]
        result.append([torch.unique(torch.cat([probs[:, i], 1 - probs[:, i]])) for i in range(probs.shape[1])])
    return result


def rule_on(points: Tensor, nodes: int) -> Tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on every interval between ``points`` in [0, 1]."""
    edges = torch.cat([torch.zeros(1, dtype=torch.float64), points.double(), torch.ones(1, dtype=torch.float64)])
    base, base_weights = np.polynomial.legendre.leggauss(nodes)
    xs, ws = [], []
    for lo, hi in zip(edges[:-1].tolist(), edges[1:].tolist()):
        if hi - lo > 1e-15:
            xs += [lo + (hi - lo) * (t + 1) / 2 for t in base]
            ws += [(hi - lo) * w / 2 for w in base_weights]
    return torch.tensor(xs, dtype=torch.float64), torch.tensor(ws, dtype=torch.float64)


def noise_grid(model: nn.Module, x: Tensor, iw: int, nodes: int, second_noise: bool = False
               ) -> Tuple[Dict[int, Tensor], Optional[Dict[int, Tensor]], Tensor]:
    """``(u, v, weights)``: the product rule over the noise of ``iw`` particles; ``u``/``v``: group ->
    ``[P * iw, d_g]`` (quadrature point slowest), ``weights [P]``."""
    per_group = thresholds(model, x)
    axes = []  # (kind, particle, group, unit, nodes, weights)
    for k in range(iw):
        for g, units in enumerate(per_group):
            for i, points in enumerate(units):
                axes.append(("u", k, g, i) + rule_on(points, nodes))
                if second_noise:
                    axes.append(("v", k, g, i) + rule_on(torch.zeros(0), nodes))
    grids = torch.meshgrid(*[a[4] for a in axes], indexing="ij")
    weight_grids = torch.meshgrid(*[a[5] for a in axes], indexing="ij")
    weights = torch.stack([w.reshape(-1) for w in weight_grids]).prod(0)  # [P]
    P = weights.shape[0]
    noise = {kind: {g: torch.zeros(P, iw, len(units), dtype=torch.float64) for g, units in enumerate(per_group)}
             for kind in ("u", "v")}
    for (kind, k, g, i, _, _), grid in zip(axes, grids):
        noise[kind][g][:, k, i] = grid.reshape(-1)
    flat = {kind: {g: t.reshape(P * iw, -1) for g, t in groups.items()} for kind, groups in noise.items()}
    return flat["u"], (flat["v"] if second_noise else None), weights


def integrate_estimator(estimator: nn.Module, model: nn.Module, x: Tensor, nodes: int = 1,
                        **runtime) -> Dict[str, Tensor]:
    """Exact (or quadrature) mean of the estimator's gradient at ``x [1, D]``: ``name -> [*shape]``
    (``model``: an ``EnumerableModel``; the estimator: a ``ControlledNoiseEstimator`` with mc = 1)."""
    mc, iw = estimator.layout
    if mc != 1:
        raise ValueError(f"the noise grid covers the iw particles of one bound: mc must be 1, got {mc}")
    u, v, weights = noise_grid(model, x, iw, nodes, second_noise=estimator.noise_streams == 2)
    P = weights.shape[0]
    estimator.check_model(model)  # its probe pass, if any, before the parameters are copied per datum
    with model.per_datum_parameters(P) as copies, estimator.fixed_noise(u, v):
        loss, _, _ = estimator(model, x.expand(P, -1), return_diagnostics=False, **runtime)
        loss.sum().backward()
    return {name: (weights.view(P, *[1] * (c.dim() - 1)) * (torch.zeros_like(c) if c.grad is None else c.grad)).sum(0)
            for name, c in copies.items()}
