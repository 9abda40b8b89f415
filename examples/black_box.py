"""Any ovis estimator on your own inference network and generative model objects (``ovis.Loss``).

    python examples/black_box.py [--estimator vimco-arithmetic] [--iw 8] [--steps 600] [--wake_sleep]

The two objects follow the model-agnostic interface (TuragaLab ``vae`` style):
``inf_net(x)`` returns itself after computing q(z|x); ``sample()`` draws z; ``log_prob(z)`` is
log q(z|x) per row. ``gen_model(x, z)`` returns itself; ``log_prob(x, z)`` is log p(x, z) per row;
``sample()`` draws dreams (x, z) for the sleep phase. ``ovis.Loss`` repeats each data point ``iw``
times, calls the objects once, and hands the ``[bs, mc, iw]`` log-densities to the estimator.
With ``--wake_sleep``, reweighted wake-sleep runs as three steps with two optimisers
(``ovis.WakeSleepSteps``: theta wake, phi wake, phi sleep). Data: noisy copies of 8 random binary
prototypes of 64 pixels (no file needed). Prints the training bound L_K as it improves.
"""
import argparse
import time

import torch
from torch import nn
from torch.distributions import Bernoulli

import ovis


class InferenceNetwork(nn.Module):
    """q(z|x) = Bernoulli(sigmoid(MLP(x))) over ``latents`` binary units."""

    def __init__(self, x_dim: int, latents: int, hidden: int = 64):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, latents))

    def forward(self, x):
        self.q = Bernoulli(logits=self.net(2 * x - 1), validate_args=False)  # [rows, latents]
        return self

    @property
    def params_(self):
        return {"probs": self.q.probs.detach()}

    def sample(self):
        return self.q.sample()

    def log_prob(self, z):
        return self.q.log_prob(z).sum(-1)  # [rows]


class GenerativeModel(nn.Module):
    """p(z) = Bernoulli(sigmoid(a)), p(x|z) = Bernoulli(sigmoid(W (2z - 1) + b))."""

    def __init__(self, x_dim: int, latents: int):
        super().__init__()
        self.prior_logits = nn.Parameter(torch.zeros(latents))
        self.decoder = nn.Linear(latents, x_dim)

    def forward(self, x, z):
        self.pz = Bernoulli(logits=self.prior_logits.expand_as(z), validate_args=False)  # [rows, latents]
        self.px = Bernoulli(logits=self.decoder(2 * z - 1), validate_args=False)  # [rows, x_dim]
        return self

    @property
    def params_(self):
        return {"prior_probs": torch.sigmoid(self.prior_logits).detach()}

    def log_prob(self, x, z):
        return self.pz.log_prob(z).sum(-1) + self.px.log_prob(x).sum(-1)  # [rows]

    @torch.no_grad()
    def sample(self, n: int = 64):
        z = Bernoulli(logits=self.prior_logits.expand(n, -1), validate_args=False).sample()  # [n, latents]
        return Bernoulli(logits=self.decoder(2 * z - 1), validate_args=False).sample(), z


def synthetic_data(n: int, x_dim: int = 64, prototypes: int = 8, flip: float = 0.05, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    centres = (torch.rand(prototypes, x_dim, generator=generator) < 0.5).float()  # [P, D]
    flips = (torch.rand(n, x_dim, generator=generator) < flip).float()  # [n, D]
    return (centres[torch.randint(prototypes, (n,), generator=generator)] + flips) % 2


def train(estimator_id="vimco-arithmetic", iw=8, steps=600, batch_size=32, lr=3e-3, latents=8, seed=0,
          wake_sleep=False, log_every=100):
    torch.manual_seed(seed)
    data = synthetic_data(2048, seed=seed)
    inf_net, gen_model = InferenceNetwork(data.shape[1], latents), GenerativeModel(data.shape[1], latents)
    loss_fn = ovis.Loss(estimator_id, inf_net, gen_model, iw=iw)
    if wake_sleep:
        rws = ovis.WakeSleepSteps(inf_net, gen_model, torch.optim.Adam(gen_model.parameters(), lr=lr),
                                     torch.optim.Adam(inf_net.parameters(), lr=lr), iw=iw)
    else:
        optimizer = torch.optim.Adam(loss_fn.parameters(), lr=lr)
    print(f"{'reweighted wake-sleep (theta wake, phi wake, phi sleep)' if wake_sleep else estimator_id} "
          f"with iw={iw}, batch {batch_size}, {steps} steps")
    start, bounds = time.time(), []
    for step in range(1, steps + 1):
        x = data[torch.randint(len(data), (batch_size,))]  # [bs, 64]
        if wake_sleep:
            rws.theta_wake(x)
            rws.phi_wake(x)
            rws.phi_sleep()
            with torch.no_grad():
                loss_fn(x)  # the bound of the current model, for the log line
        else:
            optimizer.zero_grad()
            loss_fn(x).backward()
            optimizer.step()
        bounds.append(loss_fn.bound_history_[-1])
        if step % log_every == 0 or step == steps:
            print(f"step {step:5d}  train L_{iw} {sum(bounds) / len(bounds):8.3f}  ({time.time() - start:4.1f} s)")
            bounds = []
    return loss_fn


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--estimator", default="vimco-arithmetic", help="any estimator id except stl and dreg")
    parser.add_argument("--iw", type=int, default=8, help="importance samples K")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--log_every", type=int, default=100)
    parser.add_argument("--wake_sleep", action="store_true", help="train by the three steps of reweighted wake-sleep")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # tiny tensors: one thread is as fast and does not stall on a shared machine
    train(args.estimator, args.iw, args.steps, wake_sleep=args.wake_sleep, log_every=args.log_every)


if __name__ == "__main__":
    main()
