"""The training loop behind ``run.py`` (DESIGN 4; its command line is ``ovis.apps.train``).

* ``arguments``: the options of ``run.py``, their validation and the run identity.
* ``schedules``: Renyi-alpha warm-up and learning-rate reduction.
* ``data``: deterministic batch order and fixed evaluation subsets.
* ``trainer``: the ``Trainer``: the loop (train, evaluate, checkpoint, resume).
* ``analyses``: the analyses of every periodic evaluation (active units, gradient statistics).
* ``monitor``: training losses kept on the device, read every few steps and checked.
* ``divergence``: what makes a run fail as diverged (non-finite or impossible metrics).
* ``progress``: the progress shown on the terminal; ``messages``: the lines of ``run.log``.
* ``images``: image grids of prior samples and reconstructions.
* ``evaluation``: averaging diagnostics over evaluation batches.
* ``optim``: ``--optimizer``: any ``torch.optim`` optimiser by name, fused where the device allows.
* ``recorder``: ``metrics.jsonl`` and TensorBoard (``SummaryWriter``).
* ``components``: the data, model and estimator of a run, and its process settings (device, seeds, threads).
"""
from ovis.training.arguments import ArgumentError, build_parser, parse_args, run_identity
from ovis.training.schedules import AlphaSchedule, LearningRateSchedule

__all__ = ["ArgumentError", "build_parser", "parse_args", "run_identity", "AlphaSchedule", "LearningRateSchedule"]
