"""Schedules of the training loop: Renyi-alpha warm-up and learning-rate reduction.

Both are pure functions of the training position (global step, epoch), so a resumed run
recomputes them instead of restoring them, and the curve of a resumed run equals the curve
of an unbroken one.
"""
import math

WARMUP_MODES = ("linear", "log", "sigmoid")

# Steepness of the sigmoid warm-up: sigma(6 * (2x - 1)) spans sigma(-6) .. sigma(6) over x in [0, 1].
_SIGMOID_STEEPNESS = 6.0


def _sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


class AlphaSchedule:
    """Renyi parameter alpha as a function of the global step.

    With ``x = clip((step - offset) / period, 0, 1)``, ``a0 = alpha_init`` and ``a1 = alpha``:

    * ``linear``:  ``alpha = a0 + x (a1 - a0)``
    * ``log``:     ``1 - alpha`` moves geometrically from ``1 - a0`` to ``1 - a1``
      (``alpha = 1 - exp((1 - x) log(1 - a0) + x log(1 - a1))``), the paper's warm-up.
    * ``sigmoid``: ``alpha = a0 + t(x) (a1 - a0)`` with ``t`` a logistic curve centred at
      ``x = 1/2``, rescaled so that ``t(0) = 0`` and ``t(1) = 1``. (The original centres it at
      ``x = 1`` and only reaches the midpoint at the end of the warm-up.)

    ``period = 0`` disables the warm-up: alpha is the constant ``alpha``.
    """

    def __init__(self, alpha: float, alpha_init: float = None, period: int = 0, offset: int = 0,
                 mode: str = "log"):
        if mode not in WARMUP_MODES:
            raise ValueError(f"warm-up mode {mode!r} is not one of {', '.join(WARMUP_MODES)}")
        if period < 0 or offset < 0:
            raise ValueError(f"warm-up period and offset must be >= 0, got {period} and {offset}")
        if period > 0:
            if alpha_init is None:
                raise ValueError("a warm-up needs the start value alpha_init")
            if mode == "log" and (alpha_init >= 1 or alpha >= 1):
                raise ValueError(f"the log warm-up needs alpha_init < 1 and alpha < 1, "
                                 f"got {alpha_init} and {alpha}")
        self.alpha = float(alpha)
        self.alpha_init = None if alpha_init is None else float(alpha_init)
        self.period = int(period)
        self.offset = int(offset)
        self.mode = mode

    def progress(self, step: int) -> float:
        """Fraction x in [0, 1] of the warm-up completed at ``step``."""
        if self.period == 0:
            return 1.0
        return min(max((step - self.offset) / self.period, 0.0), 1.0)

    def __call__(self, step: int) -> float:
        if self.period == 0:
            return self.alpha
        x = self.progress(step)
        a0, a1 = self.alpha_init, self.alpha
        if self.mode == "linear":
            return a0 + x * (a1 - a0)
        if self.mode == "log":
            return 1.0 - math.exp((1.0 - x) * math.log1p(-a0) + x * math.log1p(-a1))
        low, high = _sigmoid(-_SIGMOID_STEEPNESS), _sigmoid(_SIGMOID_STEEPNESS)
        t = (_sigmoid(_SIGMOID_STEEPNESS * (2.0 * x - 1.0)) - low) / (high - low)
        return a0 + t * (a1 - a0)

    def __repr__(self) -> str:
        if self.period == 0:
            return f"AlphaSchedule(constant={self.alpha})"
        return (f"AlphaSchedule({self.mode}: {self.alpha_init} -> {self.alpha} over {self.period} steps"
                f" from step {self.offset})")


class LearningRateSchedule:
    """Step-wise learning-rate halving (``--lr_reduce_steps n``, as in the original).

    Training is cut into ``n + 1`` equal phases of epochs and the learning rate is halved at the
    start of each phase after the first: ``factor(epoch) = 0.5 ** min(n, floor(epoch (n + 1) /
    epochs))``. Unlike the original it never divides by zero when ``n + 1 > epochs``
    (several halvings then fall on the same epoch) and never halves after the last epoch.
    """

    def __init__(self, epochs: int, reduce_steps: int = 0):
        if reduce_steps < 0:
            raise ValueError(f"lr_reduce_steps must be >= 0, got {reduce_steps}")
        self.epochs = int(epochs)
        self.reduce_steps = int(reduce_steps)

    def factor(self, epoch: int) -> float:
        if self.reduce_steps == 0 or self.epochs <= 0:
            return 1.0
        phase = (epoch * (self.reduce_steps + 1)) // self.epochs
        return 0.5 ** min(self.reduce_steps, max(phase, 0))

    def apply(self, optimizers, base_lrs, epoch: int) -> None:
        """Set every parameter group's lr to its base lr times ``factor(epoch)``.

        ``base_lrs``: one list of initial learning rates per optimiser (one per param group)."""
        factor = self.factor(epoch)
        for optimizer, lrs in zip(optimizers, base_lrs):
            for group, base_lr in zip(optimizer.param_groups, lrs):
                group["lr"] = base_lr * factor
