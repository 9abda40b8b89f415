"""Do ``BernoulliLogDensity`` and ``NormalLogDensity`` (``ovis.models.distributions``) make a
training step faster than torch's ``Bernoulli.log_prob`` and ``Normal.log_prob``?

    OVIS_DATA=../shared/data python benchmarks/log_density_step.py [--steps 30] [--threads 1] [--smoke]

Whole training steps (forward, backward, Adam), the two code paths alternating in one process on
the same model and batch: the 3 x 200 SBN with ``ovis-gamma1`` (Bernoulli latents and pixels) and
the Gaussian VAE of the TVO budget analysis with ``pathwise-iwae`` (Gaussian latents, Bernoulli
pixels), batch 24, K = 5 and 50. "torch" swaps torch's ``log_prob`` into ``BernoulliLogits`` or
``NormalLogScale`` for the duration of its steps. Prints the median process CPU time per step and
the gain of the hand-written path; the project keeps it only above 10%.
"""
import os
import statistics
import sys
from contextlib import contextmanager, nullcontext

import torch
from torch.distributions import Bernoulli, Normal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from ovis.analysis.floor import timed  # noqa: E402
from ovis.cli import ArgumentParser  # noqa: E402
from ovis.estimators.config import parse_estimator_id  # noqa: E402
from ovis.models import get_model  # noqa: E402
from ovis.models.distributions import BernoulliLogits, NormalLogScale  # noqa: E402
from ovis.training.efficiency import MODEL_PRESETS  # noqa: E402
from ovis.training.optim import make_optimizer  # noqa: E402

CPU = torch.device("cpu")
SETUPS = {"sbm": ("ovis-gamma1", (BernoulliLogits,)), "gaussian-vae": ("pathwise-iwae", (BernoulliLogits, NormalLogScale))}
TORCH_LOG_PROB = {BernoulliLogits: Bernoulli.log_prob, NormalLogScale: Normal.log_prob}
GAIN_TO_KEEP = 0.10


@contextmanager
def torch_log_prob(cls):
    """``cls.log_prob`` replaced by its torch parent's while the block runs."""
    own = cls.log_prob
    cls.log_prob = TORCH_LOG_PROB[cls]
    try:
        yield
    finally:
        cls.log_prob = own


def training_step(model_name: str, estimator_id: str, iw: int, x: torch.Tensor):
    torch.manual_seed(0)
    model = get_model(model_name, tuple(x.shape[1:]), **MODEL_PRESETS[model_name])
    Estimator, config = parse_estimator_id(estimator_id)
    estimator = Estimator(mc=1, iw=iw, x_shape=tuple(x.shape[1:]), **config)
    optimizer = make_optimizer("adam", model.parameters(), lr=1e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        estimator(model, x)[0].mean().backward()
        optimizer.step()
    return step


def median_cpu_ms(step, swapped, steps: int, untimed: int):
    """Median process CPU ms per step of ``step`` with the hand-written path and with torch's, alternating."""
    times = {"ovis": [], "torch": []}
    for index in range(untimed + steps):
        for label in times:
            with torch_log_prob(swapped) if label == "torch" else nullcontext():
                _, cpu = timed(step, CPU)
            if index >= untimed:
                times[label].append(cpu)
    return {label: statistics.median(values) for label, values in times.items()}


def main(argv=None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps of each path")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--smoke", action="store_true", help="two steps at K = 5 (checks that it works)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    steps, untimed, iws = (1, 1, (5,)) if args.smoke else (args.steps, 3, (5, 50))
    x = (torch.rand(24, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    print(f"torch threads {args.threads}; load average {', '.join(f'{v:.1f}' for v in os.getloadavg())}; "
          f"medians of {steps} alternating steps, process CPU ms")
    for model_name, (estimator_id, classes) in SETUPS.items():
        for iw in iws:
            step = training_step(model_name, estimator_id, iw, x)
            for cls in classes:
                ms = median_cpu_ms(step, cls, steps, untimed)
                gain = 1 - ms["ovis"] / ms["torch"]
                print(f"{model_name:>12s} {estimator_id:>13s} K={iw:<3d} {cls.__name__:>15s}: ovis {ms['ovis']:7.2f}  "
                      f"torch {ms['torch']:7.2f}  gain {gain:+.1%} ({'keep' if gain > GAIN_TO_KEEP else 'drop'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
