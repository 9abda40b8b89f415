"""REBAR-family speed targets, measured in one process: time per training step (estimator forward and
backward, one Adam step of the model and of the estimator's own parameters) of the new
estimators against ``reinforce`` at an equal number of model evaluations per data point, on the
paper's 3 x 200 linear SBN with a batch of 24 binary 28 x 28 images.

    python benchmarks/rebar_family_speed.py [--steps 30] [--threads 1] [--optimizer trainer]

    python benchmarks/rebar_family_speed.py --ids arms,arms-gaussian,double-cv,indecater,rodeo,unordered-set

    python benchmarks/rebar_family_speed.py --ids double-cv,double-cv-learned,rodeo,rodeo-learned

    python benchmarks/rebar_family_speed.py --ids rodeo,rodeo-learned,rodeo-net

Targets: nvil, arm, disarm, reinforce-loo, gumbel-softmax, straight-through within 1.3x of
reinforce (ARM and DisARM evaluate an antithetic pair per layer: against reinforce with 2 particles
for the 1-layer comparison, 1 + depth for deeper models); REBAR and RELAX (three evaluations by
construction) within 3.5x of reinforce at one particle. arms, arms-gaussian, double-cv, rodeo, their
``-learned`` ids, rodeo-net and indecater (no target) run on the one-layer SBN (1 x 200) they serve, against
reinforce with the same mc and ``model_evaluations / mc`` particles (indecater: 1 + 200
evaluations per particle);
unordered-set, which serves Bernoulli and categorical layers, runs with its reference (mc = 8) on
the categorical VAE of the discrete-estimators benchmark (20 latents of 10 categories); ``exact``,
which would enumerate 2^200 states on the SBN, on a categorical VAE of 2 latents of 8 categories
(64 states: 65 evaluations per data point, against reinforce with 65 particles).

Each comparison alternates one step of the estimator and one of its reference, so that load
changes on a shared machine hit both alike, and divides the medians of the process CPU time of
the steps (with one thread on an idle machine that is the wall-clock time; on a loaded one it
leaves out the waits for a core, as in ``benchmarks/floor.py``); the wall-clock ratio is printed
beside it, with the load average. ``--optimizer``: ``trainer`` (default:
``ovis.training.optim.make_optimizer``, torch's fused Adam, exactly as ``run.py`` trains) or
``torch-default`` (``torch.optim.Adam``'s defaults, one kernel per parameter tensor on a CPU: the
setting the targets were first measured with); the fused step is about 2 ms shorter for every
estimator, which raises the ratios of the slower ones (relax: 3.95-4.26x with trainer, 3.3-3.7x
with torch-default; see ``benchmarks/results.md``).

The ``flops`` column is the ratio of the matrix-product FLOPs of one step (torch's
formulas, ``flop_registry``, over every pass, the double backward pass included), a
machine-independent floor under the time ratio for steps that matrix products dominate: relax
performs 4.8x the FLOPs of reinforce (dynamic-rebar 4.2x, rebar 2.8x), since training eta, the
temperature and the surrogate network to minimise the variance differentiates the backward pass
of the relaxed model calls once more.
"""
import os
import statistics
from typing import Callable, List, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from ovis.analysis.floor import timed
from ovis.cli import ArgumentParser
from ovis.estimators.config import parse_estimator_id
from ovis.models import get_model
from ovis.training.optim import make_optimizer

# (id, mc, iw, reference mc, reference iw, target ratio)
COMPARISONS = (
    ("nvil", 1, 1, 1, 1, 1.3), ("reinforce-loo", 2, 1, 2, 1, 1.3), ("gumbel-softmax", 1, 1, 1, 1, 1.3),
    ("straight-through", 1, 1, 1, 1, 1.3), ("arm", 1, 1, 1, "pairs", 1.3), ("disarm", 1, 1, 1, "pairs", 1.3),
    ("disarm-iw", 1, 5, 1, "pairs", 1.3), ("muprop", 1, 1, 1, 1, None), ("simple-muprop", 1, 1, 1, 1, None),
    ("rebar", 1, 1, 1, 1, 3.5), ("dynamic-rebar", 1, 1, 1, 1, None), ("relax", 1, 1, 1, 1, 3.5),
    ("arms", 4, 1, 4, "evaluations", None), ("arms-gaussian", 4, 1, 4, "evaluations", None),
    ("double-cv", 4, 1, 4, "evaluations", None), ("indecater", 1, 1, 1, "evaluations", None),
    ("rodeo", 4, 1, 4, "evaluations", None), ("unordered-set", 8, 1, 8, "evaluations", None),
    ("double-cv-learned", 4, 1, 4, "evaluations", None), ("rodeo-learned", 4, 1, 4, "evaluations", None),
    ("rodeo-net", 4, 1, 4, "evaluations", None), ("exact", 1, 1, 1, "evaluations", None),
)
ONE_LAYER = {"arms", "arms-gaussian", "double-cv", "indecater", "rodeo", "double-cv-learned",
             "rodeo-learned", "rodeo-net"}  # estimators of one stochastic layer
LATENT_UNITS = 200
# estimators timed on a categorical VAE: the discrete-estimators benchmark's (20 latents of 10 categories), or
# one small enough to enumerate
CATEGORICAL = {"unordered-set": dict(prior="categorical", N=20, K=10, hdim=200, nlayers=1, depth=1),
               "exact": dict(prior="categorical", N=2, K=8, hdim=200, nlayers=1, depth=1)}
UNTIMED_STEPS = 3
CPU = torch.device("cpu")


OPTIMIZERS = {"trainer": lambda params: make_optimizer("adam", params, lr=1e-3),
              "torch-default": lambda params: torch.optim.Adam(params, lr=1e-3)}


def model_of(estimator_id: str, depth: int) -> Tuple[str, dict]:
    """The model (name, hyper-parameters) that ``estimator_id`` and its reference are timed on."""
    if estimator_id in CATEGORICAL:
        return "vae", CATEGORICAL[estimator_id]
    return "sbm", dict(N=LATENT_UNITS, depth=depth, nlayers=0)


def model_and_estimator(estimator_id: str, mc: int, iw: int, model_spec: Tuple[str, dict], x_shape: tuple):
    """A fresh model ``model_spec`` and ``estimator_id``, checked against it."""
    torch.manual_seed(0)
    model = get_model(model_spec[0], x_shape, **model_spec[1])
    Estimator, config = parse_estimator_id(estimator_id)
    estimator = Estimator(mc=mc, iw=iw, x_shape=x_shape, **config)
    estimator.check_model(model)
    return model, estimator


def training_step(estimator_id: str, mc: int, iw: int, model_spec: Tuple[str, dict], x: torch.Tensor,
                  optimizer: str = "trainer") -> Callable[[], None]:
    """One training step of a fresh model ``model_spec`` with ``estimator_id`` on ``x``, as a function."""
    model, estimator = model_and_estimator(estimator_id, mc, iw, model_spec, tuple(x.shape[1:]))
    optimizers = [OPTIMIZERS[optimizer](model.parameters())]
    own = [p for p in estimator.parameters() if p.requires_grad]
    if own:
        optimizers.append(OPTIMIZERS[optimizer](own))

    def step() -> None:
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        estimator(model, x, backward=True)  # the step's backward pass, as the trainer runs it
        for optimizer in optimizers:
            optimizer.step()
    return step


class MatrixProductFlops(TorchDispatchMode):
    """Counts the FLOPs of the operators that torch's ``flop_registry`` has a formula for (the
    matrix products). ``FlopCounterMode`` itself also hooks every module, which breaks the
    ``autograd.grad`` calls on leaf tensors of MuProp's mean-field pass."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += formula(*args, **kwargs, out_val=out)
        return out


def step_flops(step: Callable[[], None]) -> int:
    """Matrix-product FLOPs of one call of ``step`` (forward, backward and double backward passes)."""
    with MatrixProductFlops() as counter:
        step()
    return counter.total


def median_step_times(steps: List[Callable[[], None]], timed_steps: int) -> List[Tuple[float, float]]:
    """Median ``(CPU, wall)`` milliseconds per step of each function, called in turn at every step."""
    times: List[List[Tuple[float, float]]] = [[] for _ in steps]
    for index in range(timed_steps + UNTIMED_STEPS):
        for step, record in zip(steps, times):
            wall, cpu = timed(step, CPU)  # milliseconds
            if index >= UNTIMED_STEPS:
                record.append((cpu, wall))
    return [(statistics.median(t[0] for t in record), statistics.median(t[1] for t in record)) for record in times]


def main(argv=None) -> None:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30,
                        help="timed steps of each estimator and of its reference")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--depth", type=int, default=3, help="stochastic layers of the SBN")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="trainer",
                        help="trainer: make_optimizer's fused Adam; torch-default: torch.optim.Adam's defaults")
    parser.add_argument("--ids", default=None,
                        help="comma-separated estimator ids of the comparisons to run (default: all)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = (torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"optimizer {args.optimizer}; torch threads {args.threads}; load average {load}; "
          f"medians of {args.steps} alternating steps; ratios of process CPU time (wall clock beside)")
    print(f"{'estimator':>18s} {'mc':>3s} {'iw':>3s} {'ms/step':>9s} {'reinforce ms':>12s} {'ref iw':>6s} {'ratio':>6s} "
          f"{'wall':>6s} {'flops':>6s} {'target':>6s}")
    chosen = None if args.ids is None else set(args.ids.split(","))
    for estimator_id, mc, iw, ref_mc, ref_iw, target in COMPARISONS:
        if chosen is not None and estimator_id not in chosen:
            continue
        depth = 1 if estimator_id in ONE_LAYER else args.depth
        model_spec = model_of(estimator_id, depth)
        if ref_iw == "evaluations":  # the estimator's count on this model
            estimator = model_and_estimator(estimator_id, mc, iw, model_spec, tuple(x.shape[1:]))[1]
            ref_iw = estimator.model_evaluations() // ref_mc
        ref_iw = iw * (1 + depth) if ref_iw == "pairs" else ref_iw
        steps = [training_step(estimator_id, mc, iw, model_spec, x, args.optimizer),
                 training_step("reinforce", ref_mc, ref_iw, model_spec, x, args.optimizer)]
        (cpu, wall), (ref_cpu, ref_wall) = median_step_times(steps, args.steps)
        flops, ref_flops = (step_flops(step) for step in steps)
        print(f"{estimator_id:>18s} {mc:3d} {iw:3d} {cpu:9.2f} {ref_cpu:12.2f} {ref_iw:6d} {cpu / ref_cpu:6.2f} "
              f"{wall / ref_wall:6.2f} {flops / ref_flops:6.2f} {'-' if target is None else target:>6}")


if __name__ == "__main__":
    main()
