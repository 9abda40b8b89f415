"""A model whose latent structure differs per data point, trained at batch size 3.

    python examples/dynamic_structure.py [--estimators wake-wake,vimco-arithmetic,ovis-gamma1,reinforce]
                                         [--iw 8] [--mc 1] [--steps 400] [--own_sampling]

For each observation x, draw Bernoulli(s) until the first success; the number of failures n is
the latent; observe whether n equals x (``ovis.models.dynamic``). The number of draws is random,
so the model samples row by row; ``ovis.Loss`` stacks its log-densities to ``[bs, mc, iw]``,
takes the logsumexp over the particles of each data point, then the batch mean: the bound
trained is the mean of the per-point bounds (Pyro's sequential-plate workaround sums the batch
before the logsumexp, a different objective). Data: the batch ``[8, 9, 10]``. Prints each
estimator's bound as it improves, next to the exact log-likelihood log p(o = 1; x).
``--own_sampling`` runs the same training with a hand-written sampling loop and
``estimator.loss_from_log_probs`` (the entry point for your own sampling code or another PPL).
"""
import argparse
import time

import torch

import ovis
from ovis.cli import comma_list
from ovis.models.dynamic import GeometricGenerative, GeometricInference

DATA = torch.tensor([8.0, 9.0, 10.0])


def own_sampling_loss(estimator, inf_net, gen_model, x):
    """The same step without ``ovis.Loss``: your own sampling code, then the estimator's
    ``loss_from_log_probs`` on the per-particle log-densities ``[bs, mc, n]``.
    ``estimator.particle_shape(bs)`` gives the shape to sample: ``n`` is ``iw`` plus the
    auxiliary particles of exclusive OVIS-MC (``ovis-S1-exclusive``: iw + 1)."""
    shape = estimator.particle_shape(len(x))  # (bs, mc, n)
    x_rows = x.repeat_interleave(shape[1] * shape[2])  # [bs * mc * n], data point slowest
    z = inf_net(x_rows).sample()  # bs * mc * n draw sequences of random lengths
    log_q = inf_net.log_prob(z).view(shape)  # [bs, mc, n]
    log_p = gen_model(x_rows, z).log_prob(x_rows, z).view(shape)  # [bs, mc, n]
    loss, diagnostics = estimator.loss_from_log_probs(log_p, log_q)  # [bs]
    return loss.mean(), diagnostics["loss/L_k"].mean().item()


def train(estimator_id="vimco-arithmetic", iw=8, steps=400, lr=0.03, seed=0, log_every=100, own_sampling=False,
          mc=1):
    torch.manual_seed(seed)
    inf_net, gen_model = GeometricInference(slope=0.3), GeometricGenerative()  # q starts stopping near x
    loss_fn = ovis.Loss(estimator_id, inf_net, gen_model, iw=iw, mc=mc)
    optimizer = torch.optim.Adam(loss_fn.parameters(), lr=lr)
    print(f"{estimator_id} with mc={mc}, iw={iw}, batch {DATA.tolist()}, {steps} steps"
          f"{' (own sampling code + loss_from_log_probs)' if own_sampling else ''}")
    start, bounds = time.time(), []
    for step in range(1, steps + 1):
        optimizer.zero_grad()
        if own_sampling:
            loss, bound = own_sampling_loss(loss_fn.estimator, inf_net, gen_model, DATA)
        else:
            loss = loss_fn(DATA)
            bound = loss_fn.bound_history_[-1]
        loss.backward()
        optimizer.step()
        bounds.append(bound)
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
    parser.add_argument("--mc", type=int, default=1,
                        help="independent bounds per data point (reinforce-loo's leave-one-out baseline needs 2 or more)")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--log_every", type=int, default=100)
    parser.add_argument("--own_sampling", action="store_true",
                        help="sample with your own loop and call estimator.loss_from_log_probs instead of ovis.Loss")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # scalar-sized tensors: threads only add overhead
    for estimator_id in args.estimators:
        train(estimator_id, args.iw, args.steps, log_every=args.log_every, own_sampling=args.own_sampling, mc=args.mc)


if __name__ == "__main__":
    main()
