"""Training progress on the terminal: a tqdm bar (steps/s, ETA, latest bound) when stderr is a
terminal and the run is not ``--silent``."""
import sys
from typing import Optional


class Progress:
    """``update`` is called at every read of the training losses (``StepMonitor.sync``)."""

    def __init__(self, total: int, initial: int, silent: bool):
        self.bar = None
        if not silent and sys.stderr.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, file=sys.stderr,
                            smoothing=0.1)

    def update(self, step: int, epoch: int, bound: float, alpha: float) -> None:
        if self.bar is None:
            return
        self.bar.n = step
        self.bar.set_postfix(L_k=f"{bound:.3f}", alpha=f"{alpha:.3g}", epoch=epoch, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
