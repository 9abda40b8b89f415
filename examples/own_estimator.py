"""Your own estimator, outside the package: define it, register it, train with it through run.py.

    python examples/own_estimator.py [run.py options, e.g. --nsteps 2000 --data_root ../shared/data]

Once registered, its id (``reinforce-ma``) works everywhere a built-in id works. For the other
processes (a queue's runs, ``report.py``, ``python -m ovis.apps.check``), name this module
in ``OVIS_ESTIMATOR_PLUGINS`` (with the repository on ``PYTHONPATH``)::

    OVIS_ESTIMATOR_PLUGINS=examples.own_estimator python -m ovis.apps.check --estimators reinforce-ma

or, in an installed package, declare the family under the entry-point group ``ovis.estimators``::

    [project.entry-points."ovis.estimators"]
    reinforce-ma = "my_package.own_estimator:FAMILY"
"""
import sys

import torch

from ovis.estimators import EstimatorFamily, Style, register_estimator
from ovis.estimators.score_function import ScoreFunctionEstimator


class MovingAverageBaseline(ScoreFunctionEstimator):
    """Reinforce with a moving-average baseline (Williams, 1992): ``c_k = m``, the exponential
    moving average (``momentum``) of the batch-mean bound of past training steps. ``m`` is fixed
    during a step and independent of its particles: unbiased for the gradient of L_K."""
    unbiased_for = "∇ L_K"

    def __init__(self, mc: int = 1, iw: int = 1, momentum: float = 0.9, **options):
        super().__init__(mc, iw, **options)
        self.momentum = momentum
        self.register_buffer("average", torch.zeros(()))

    def control_variate(self, x, log_weights, bound, weights, aux_log_weights, options):
        control_variate = self.average.to(bound).clone()  # [], the average before this step
        if self.training and torch.is_grad_enabled():
            self.average.lerp_(bound.mean().to(self.average), 1 - self.momentum)
        return control_variate


FAMILY = register_estimator(EstimatorFamily(
    name="reinforce-ma", grammar="reinforce-ma", ids={"reinforce-ma": (MovingAverageBaseline, {})},
    examples=("reinforce-ma",), label="Reinforce (moving average)", style=Style("#8c564b", (5, 4))))


def main(argv=None) -> int:
    """run.py with ``--estimator reinforce-ma`` and a short default run (the given options override)."""
    from ovis.apps.train import main as run
    defaults = ["--estimator", "reinforce-ma", "--model", "sbm", "--dataset", "binmnist", "--iw", "5",
                "--nsteps", "200", "--exp", "own-estimator"]
    return run(defaults + list(sys.argv[1:] if argv is None else argv))


if __name__ == "__main__":
    sys.exit(main())
