"""Issue 10's speed targets, measured in one process: time per training step (estimator forward and
backward, one Adam step of the model and of the estimator's own parameters) of the new
estimators against ``reinforce`` at an equal number of model evaluations per data point, on the
paper's 3 x 200 linear SBN with a batch of 24 binary 28 x 28 images.

    python benchmarks/rebar_family_speed.py [--steps 30] [--threads 1]

Targets: nvil, arm, disarm, reinforce-loo, gumbel-softmax, straight-through within 1.3x of
reinforce (ARM and DisARM evaluate an antithetic pair per layer: against reinforce with 2 particles
for the 1-layer comparison, 1 + depth for deeper models); REBAR and RELAX (three evaluations by
construction) within 3.5x of reinforce at one particle.
"""
import argparse
import statistics
import time

import torch

from ovis.estimators.config import parse_estimator_id
from ovis.models import get_model

# (id, mc, iw, reference mc, reference iw, target ratio)
COMPARISONS = (
    ("nvil", 1, 1, 1, 1, 1.3), ("reinforce-loo", 2, 1, 2, 1, 1.3), ("gumbel-softmax", 1, 1, 1, 1, 1.3),
    ("straight-through", 1, 1, 1, 1, 1.3), ("arm", 1, 1, 1, "pairs", 1.3), ("disarm", 1, 1, 1, "pairs", 1.3),
    ("disarm-iw", 1, 5, 1, "pairs", 1.3), ("muprop", 1, 1, 1, 1, None), ("simple-muprop", 1, 1, 1, 1, None),
    ("rebar", 1, 1, 1, 1, 3.5), ("dynamic-rebar", 1, 1, 1, 1, None), ("relax", 1, 1, 1, 1, 3.5),
)


def step_time(estimator_id: str, mc: int, iw: int, depth: int, steps: int, x: torch.Tensor) -> float:
    torch.manual_seed(0)
    model = get_model("sbm", tuple(x.shape[1:]), N=200, depth=depth, nlayers=0)
    Estimator, config = parse_estimator_id(estimator_id)
    estimator = Estimator(mc=mc, iw=iw, x_shape=tuple(x.shape[1:]), **config)
    estimator.check_model(model)
    optimizers = [torch.optim.Adam(model.parameters(), lr=1e-3)]
    own = [p for p in estimator.parameters() if p.requires_grad]
    if own:
        optimizers.append(torch.optim.Adam(own, lr=1e-3))
    times = []
    for step in range(steps + 3):
        start = time.perf_counter()
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        loss, _, _ = estimator(model, x)
        loss.mean().backward()
        for optimizer in optimizers:
            optimizer.step()
        if step >= 3:
            times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--depth", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    x = (torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    reference = {}
    print(f"{'estimator':>18s} {'mc':>3s} {'iw':>3s} {'ms/step':>9s} {'reinforce ms':>12s} {'ratio':>6s} {'target':>6s}")
    for estimator_id, mc, iw, ref_mc, ref_iw, target in COMPARISONS:
        ref_iw = iw * (1 + args.depth) if ref_iw == "pairs" else ref_iw
        key = (ref_mc, ref_iw)
        if key not in reference:
            reference[key] = step_time("reinforce", ref_mc, ref_iw, args.depth, args.steps, x)
        ms = step_time(estimator_id, mc, iw, args.depth, args.steps, x)
        ratio = ms / reference[key]
        print(f"{estimator_id:>18s} {mc:3d} {iw:3d} {1e3 * ms:9.2f} {1e3 * reference[key]:12.2f} {ratio:6.2f} "
              f"{'-' if target is None else target:>6}")


if __name__ == "__main__":
    main()
