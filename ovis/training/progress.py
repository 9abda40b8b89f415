"""Training progress: a tqdm bar with steps/s, ETA and the latest training
bound when stderr is a terminal; otherwise (a queue's log file, a pipe, or ``--silent``) a plain
line in ``run.log`` every ``plain_line_interval(total)`` steps and at least every
``PLAIN_LINE_SECONDS`` (checked at the reads of the training losses), also on the terminal
unless ``--silent``."""
import logging
import sys
import time
from typing import Callable

from tqdm import tqdm

from ovis.training.monitor import SYNC_EVERY

PLAIN_LINES = 100  # about this many plain lines over a whole run
PLAIN_LINE_SECONDS = 120.0  # and at most this long between two of them


def plain_line_interval(total_steps: int) -> int:
    """Steps between plain lines: ``total / PLAIN_LINES`` rounded up to whole reads of the
    training losses (``SYNC_EVERY``), so a line is due exactly at a read."""
    reads = -(-max(total_steps, 1) // (PLAIN_LINES * SYNC_EVERY))  # ceil
    return reads * SYNC_EVERY


class Progress:
    """``update`` is called at every read of the training losses (``StepMonitor.sync``);
    ``describe`` names what runs between steps (evaluations)."""

    def __init__(self, total: int, initial: int, silent: bool, logger: logging.Logger,
                 clock: Callable[[], float] = time.monotonic):
        self.total, self.logger, self.clock = total, logger, clock
        self.start_step, self.start_time = initial, clock()
        self.every = plain_line_interval(total)
        self.next_line = (initial // self.every + 1) * self.every
        self.last_line_time = self.start_time
        self.bar = None
        if not silent and sys.stderr.isatty():
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                            smoothing=0.1)

    def update(self, step: int, epoch: int, bound: float, alpha: float) -> None:
        if self.bar is not None:
            self.bar.n = step
            self.bar.set_postfix(L_k=f"{bound:.3f}", alpha=f"{alpha:.3g}", epoch=epoch, refresh=False)
            self.bar.refresh()
            return
        now = self.clock()
        if step >= self.next_line or now - self.last_line_time >= PLAIN_LINE_SECONDS:
            self.logger.info("%s", self.plain_line(step, epoch, bound, now))
            self.next_line = (step // self.every + 1) * self.every
            self.last_line_time = now

    def plain_line(self, step: int, epoch: int, bound: float, now: float) -> str:
        """``step 1000/500000 (0.2%) epoch 1 | 85.3 steps/s | ETA 01:37:12 | L_k -98.123``."""
        elapsed = now - self.start_time
        rate = (step - self.start_step) / elapsed if elapsed > 0 else 0.0
        eta = tqdm.format_interval((self.total - step) / rate) if rate > 0 else "?"
        return (f"step {step}/{self.total} ({100 * step / max(self.total, 1):.1f}%) epoch {epoch} | "
                f"{rate:.1f} steps/s | ETA {eta} | L_k {bound:.3f}")

    def describe(self, text: str) -> None:
        """Show ``text`` before the bar (``""`` clears it)."""
        if self.bar is not None:
            self.bar.set_description_str(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
