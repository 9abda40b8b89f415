"""Train your own model with an ovis estimator: a VAE with Bernoulli latents, trained with
OVIS~ (``ovis-gamma1``) on binarized MNIST, on the CPU in well under a minute.

    python examples/template_model.py [--estimator ovis-gamma1] [--iw 16] [--steps 1000] [--data_root ../shared/data]

A model is any ``nn.Module`` whose ``forward(x, reparam=False, **kwargs)`` returns a dict with
``px`` (p(x|z), a ``torch.distributions`` object), ``z`` (list of latent samples, one per
stochastic layer), ``qz`` and ``pz`` (lists of distributions); see ``ovis.models.TemplateModel``.
The estimator repeats every data point ``mc * iw`` times along the batch axis: the model only sees
a larger batch. Data: ``binarized_mnist.npz`` from ``--data_root`` or ``$OVIS_DATA``; without it,
a synthetic data set of noisy binary prototypes.
"""
import argparse
import os
import time

import numpy as np
import torch
from torch import nn
from torch.distributions import Bernoulli

from ovis.estimators import BoundEvaluator
from ovis.estimators.config import parse_estimator_id
from ovis.models.base import TemplateModel


class BernoulliVAE(TemplateModel):
    """p(z) = Bernoulli(sigmoid(a)) over ``latents`` units, p(x|z) and q(z|x) one-hidden-layer MLPs."""

    def __init__(self, x_dim: int, latents: int = 64, hidden: int = 200, x_mean: torch.Tensor = None):
        super().__init__()
        self.inference_network = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, latents))
        self.generative_model = nn.ModuleDict({
            "decoder": nn.Sequential(nn.Linear(latents, hidden), nn.Tanh(), nn.Linear(hidden, x_dim))})
        self.generative_model.prior_logits = nn.Parameter(torch.zeros(latents))
        if x_mean is not None:  # start the decoder at the pixel means
            with torch.no_grad():
                self.generative_model["decoder"][-1].bias.copy_(torch.logit(x_mean.clamp(1e-3, 1 - 1e-3)))

    def forward(self, x, reparam=False, **kwargs):
        qz = Bernoulli(logits=self.inference_network(2 * x - 1), validate_args=False)  # [rows, latents]
        z = qz.sample()  # binary latents: score-function estimators only
        pz = Bernoulli(logits=self.generative_model.prior_logits.expand_as(z), validate_args=False)
        px = Bernoulli(logits=self.generative_model["decoder"](2 * z - 1), validate_args=False)  # [rows, x_dim]
        return {"px": px, "z": [z], "qz": [qz], "pz": [pz]}

    @torch.no_grad()
    def sample_from_prior(self, n, **kwargs):
        pz = Bernoulli(logits=self.generative_model.prior_logits.expand(n, -1), validate_args=False)
        z = pz.sample()
        return {"px": Bernoulli(logits=self.generative_model["decoder"](2 * z - 1)), "z": [z], "pz": [pz]}


def load_data(data_root, train_size=10000, test_size=500, seed=0):
    """Binarized MNIST ``[n, 784]`` float tensors, or noisy binary prototypes when it is absent."""
    root = data_root or os.environ.get("OVIS_DATA", "data")
    path = os.path.join(root, "binarized_mnist.npz")
    if os.path.exists(path):
        with np.load(path) as data:
            train, test = data["train"][:train_size], data["test"][:test_size]
        return torch.from_numpy(train).float(), torch.from_numpy(test).float(), path
    generator = torch.Generator().manual_seed(seed)
    prototypes = (torch.rand(10, 784, generator=generator) < 0.3).float()  # [10, 784]

    def sample(n):
        flips = (torch.rand(n, 784, generator=generator) < 0.05).float()
        return (prototypes[torch.randint(10, (n,), generator=generator)] + flips) % 2

    return sample(train_size), sample(test_size), "synthetic prototypes (binarized_mnist.npz not found)"


def train(estimator_id="ovis-gamma1", iw=16, steps=1000, batch_size=32, lr=1e-3, data_root=None, seed=0,
          log_every=200):
    torch.manual_seed(seed)
    x_train, x_test, source = load_data(data_root, seed=seed)
    model = BernoulliVAE(x_train.shape[1], x_mean=x_train.mean(0))
    Estimator, config = parse_estimator_id(estimator_id)
    estimator = Estimator(mc=1, iw=iw, x_shape=x_train.shape[1:], **config)
    estimator.check_model(model)
    evaluator = BoundEvaluator(iw=64, chunk_size=16000)
    parameters = list(model.parameters()) + list(estimator.parameters())  # (a neural baseline has some)
    optimizer = torch.optim.Adam(parameters, lr=lr)
    print(f"data: {source}; {estimator_id} with iw={iw}, batch {batch_size}, {steps} steps")
    start, recent = time.time(), []
    for step in range(1, steps + 1):
        batch = x_train[torch.randint(len(x_train), (batch_size,))]
        optimizer.zero_grad()
        loss, diagnostics, _ = estimator(model, batch, backward=True)
        optimizer.step()
        recent.append(diagnostics["loss/L_k"].mean().item())
        if step % log_every == 0 or step == steps:
            test_bound = -evaluator(model, x_test)[0].mean().item()
            print(f"step {step:5d}  train L_{iw} {np.mean(recent):8.2f}  test L_{evaluator.iw} {test_bound:8.2f}  "
                  f"ess {diagnostics['loss/ess'].mean().item():5.2f}  ({time.time() - start:4.1f} s)")
            recent = []
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimator", default="ovis-gamma1", help="estimator id (ovis.estimators.config)")
    parser.add_argument("--iw", type=int, default=16, help="importance samples K")
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data_root", default=None, help="folder with binarized_mnist.npz (default $OVIS_DATA)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log_every", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads of PyTorch (0: its default). The model is small: one thread is nearly "
                             "as fast and does not stall when other processes share the cores")
    args = parser.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    train(args.estimator, args.iw, args.steps, args.batch_size, args.lr, args.data_root, args.seed, args.log_every)


if __name__ == "__main__":
    main()
