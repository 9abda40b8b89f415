"""Is ``ovis.models.distributions.BernoulliLogits.sample`` worth its own code?

    python benchmarks/bernoulli_sampling.py [--threads 1] [--repeats 7]

Times drawing one layer of the 3 x 200 SBN's latents, ``[24 * K, 200]`` at batch 24 (K = 5 and
50), with ``BernoulliLogits(logits).sample()`` (uniforms compared with the probabilities) and with
``torch.distributions.Bernoulli(logits=logits).sample()``, alternating in one process; prints the
median time of each and their ratio. The project keeps a hand-written replacement only when it
gains more than 10%.
"""
import argparse
import os
import statistics
import sys
import time

import torch
from torch.distributions import Bernoulli

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.models.distributions import BernoulliLogits  # noqa: E402

BATCH, UNITS, CALLS = 24, 200, 100


def median_us(sample, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(CALLS):
            sample()
        times.append(1e6 * (time.perf_counter() - start) / CALLS)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for iw in (5, 50):
        logits = torch.randn(BATCH * iw, UNITS)  # [bs * iw, N]
        ours = median_us(lambda: BernoulliLogits(logits).sample(), args.repeats)
        theirs = median_us(lambda: Bernoulli(logits=logits).sample(), args.repeats)
        print(f"K={iw:3d} [{BATCH * iw}, {UNITS}]: BernoulliLogits {ours:8.1f} us, torch Bernoulli {theirs:8.1f} us, "
              f"torch / ours = {theirs / ours:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
