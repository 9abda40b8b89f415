"""A model whose latent structure differs per data point, trained at batch size 3.

    python examples/dynamic_structure.py [--estimators wake-wake,vimco-arithmetic,ovis-gamma1,reinforce]
                                         [--iw 8] [--steps 400]

For each observation x, draw Bernoulli(s) until the first success; the number of failures n is
the latent; observe whether n equals x (``ovis.models.dynamic``). The number of draws is random,
so the model samples row by row; ``ovis.Loss`` stacks its log-densities to ``[bs, mc, iw]``,
takes the logsumexp over the particles of each data point, then the batch mean: the bound
trained is the mean of the per-point bounds (Pyro's sequential-plate workaround sums the batch
before the logsumexp, a different objective). Data: the batch ``[8, 9, 10]``. Prints each
estimator's bound as it improves, next to the exact log-likelihood log p(o = 1; x).
"""
import argparse
import time

import torch

import ovis
from ovis.cli import comma_list
from ovis.models.dynamic import GeometricGenerative, GeometricInference

DATA = torch.tensor([8.0, 9.0, 10.0])


def train(estimator_id="vimco-arithmetic", iw=8, steps=400, lr=0.03, seed=0, log_every=100):
    torch.manual_seed(seed)
    inf_net, gen_model = GeometricInference(slope=0.3), GeometricGenerative()  # q starts stopping near x
    loss_fn = ovis.Loss(estimator_id, inf_net, gen_model, iw=iw)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=lr)
    print(f"{estimator_id} with iw={iw}, batch {DATA.tolist()}, {steps} steps")
    start, bounds = time.time(), []
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        loss_fn(DATA).backward()
        optimizer.step()
        bounds.append(loss_fn.bound_history_[-1])
        if step % log_every == 0 or step == steps:
            exact = gen_model.exact_log_marginal(DATA).mean().item()
            q = ", ".join(f"{k} {v:.2f}" for k, v in inf_net.params_.items())
            print(f"  step {step:5d}  L_{iw} {sum(bounds) / len(bounds):7.3f}  log p(x) {exact:7.3f}  "
                  f"success prob {gen_model.params_['success_prob']:.3f}  q: {q}  ({time.time() - start:4.1f} s)")
            bounds = []
    return loss_fn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimators", type=comma_list, default="wake-wake,vimco-arithmetic,ovis-gamma1,reinforce",
                        help="comma-separated estimator ids")
    parser.add_argument("--iw", type=int, default=8, help="importance samples K")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--log_every", type=int, default=100)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # scalar-sized tensors: threads only add overhead
    for estimator_id in args.estimators:
        train(estimator_id, args.iw, args.steps, log_every=args.log_every)


if __name__ == "__main__":
    main()
