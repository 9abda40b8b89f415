"""Are ``ovis.models.distributions``' own Bernoulli and Normal code paths worth their code?

    python benchmarks/bernoulli_sampling.py [--threads 1] [--repeats 7]

At batch 24 and K = 5 and 50, alternating in one process, prints the median time of each pair
and their ratio:

* ``sample``: drawing one layer of the 3 x 200 SBN's latents ``[24 K, 200]`` with
  ``BernoulliLogits(logits).sample()`` (uniforms compared with the probabilities straight into
  floats) and with ``torch.distributions.Bernoulli(logits=logits).sample()``;
* ``bernoulli log p``: forward and backward (gradient of the logits) of the Bernoulli
  log-density of binary values, ``BernoulliLogits.log_prob`` (``BernoulliLogDensity``; in a
  training step q's groups also reuse the sampler's probabilities) against ``-binary_cross_entropy_with_logits`` (negated by its weight), on a latent
  layer ``[24 K, 200]`` and on the pixels ``[24 K, 784]``;
* ``normal log p``: forward and backward (gradients of the value, the location and the log
  scale) of ``NormalLogScale.log_prob`` against ``Normal(loc, log_scale.exp()).log_prob`` on
  ``[24 K, 200]`` (the Gaussian VAE's latents).

The project keeps a hand-written replacement only when it gains more than 10%.
"""
import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, Tuple

import torch
import torch.nn.functional as F
from torch.distributions import Bernoulli, Normal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.models.distributions import BernoulliLogits, NormalLogScale  # noqa: E402

BATCH, UNITS, PIXELS, CALLS = 24, 200, 784, 20


def median_us(function: Callable[[], None], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(CALLS):
            function()
        times.append(1e6 * (time.perf_counter() - start) / CALLS)
    return statistics.median(times)


def bernoulli_pair(rows: int, columns: int) -> Tuple[Callable, Callable]:
    """(ours, torch's): forward and backward of the log-density of binary values."""
    logits = torch.randn(rows, columns, requires_grad=True)  # [rows, columns]
    values = (torch.rand(rows, columns) < 0.5).float()  # [rows, columns]

    minus_one = torch.full((), -1.0)

    def ours():
        torch.autograd.grad(BernoulliLogits(logits).log_prob(values).sum(), logits)

    def theirs():  # the weight -1 negates inside the kernel
        log_prob = F.binary_cross_entropy_with_logits(logits, values, weight=minus_one, reduction="none")
        torch.autograd.grad(log_prob.sum(), logits)
    return ours, theirs


def normal_pair(rows: int) -> Tuple[Callable, Callable]:
    """(ours, torch's): forward and backward of the log-density of a pathwise sample."""
    loc, log_scale = torch.randn(2, rows, UNITS, requires_grad=True)  # [rows, N] each
    values = torch.randn(rows, UNITS, requires_grad=True)  # [rows, N]
    inputs = [values, loc, log_scale]

    def ours():
        torch.autograd.grad(NormalLogScale(loc, log_scale).log_prob(values).sum(), inputs)

    def theirs():
        torch.autograd.grad(Normal(loc, log_scale.exp(), validate_args=False).log_prob(values).sum(), inputs)
    return ours, theirs


def pairs(iw: int) -> Dict[str, Tuple[Callable, Callable]]:
    rows = BATCH * iw
    logits = torch.randn(rows, UNITS)  # [bs * iw, N]
    return {
        f"sample [{rows}, {UNITS}]": (lambda: BernoulliLogits(logits).sample(),
                                      lambda: Bernoulli(logits=logits).sample()),
        f"bernoulli log p [{rows}, {UNITS}]": bernoulli_pair(rows, UNITS),
        f"bernoulli log p [{rows}, {PIXELS}]": bernoulli_pair(rows, PIXELS),
        f"normal log p [{rows}, {UNITS}]": normal_pair(rows),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for iw in (5, 50):
        for name, (ours, theirs) in pairs(iw).items():
            ours(), theirs()  # warm-up
            ours_us, theirs_us = median_us(ours, args.repeats), median_us(theirs, args.repeats)
            print(f"K={iw:3d} {name:30s} ovis {ours_us:8.1f} us, torch {theirs_us:8.1f} us, "
                  f"torch / ovis = {theirs_us / ours_us:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
