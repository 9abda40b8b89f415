"""SIGINT / SIGTERM during training: finish the current step, checkpoint, then stop.

A first signal sets a flag that the loop checks after every step (``StopRequests.check``
raises ``AbortRequested`` once the checkpoint is saved); a second signal stops at once with
``KeyboardInterrupt``, keeping the last checkpoint."""
import signal
import threading
from typing import Dict, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class AbortRequested(Exception):
    """SIGINT or SIGTERM: the run stopped after a step and saved a checkpoint."""


class StopRequests:
    """Handlers of ``STOP_SIGNALS`` for the duration of a ``with`` block (main thread only:
    Python delivers signals there)."""

    def __init__(self, logger):
        self.logger = logger
        self.signum: Optional[int] = None
        self._previous: Dict = {}

    @property
    def pending(self) -> bool:
        return self.signum is not None

    def __enter__(self) -> "StopRequests":
        if threading.current_thread() is threading.main_thread():
            self._previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    def check(self, step: int, epoch: int) -> None:
        """Raise ``AbortRequested`` if a signal arrived (call it after saving the checkpoint)."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise AbortRequested(f"{name} received: stopped at step {step} (epoch {epoch}); "
                                 f"the checkpoint of this step is saved, --resume continues the run")

    def _on_signal(self, signum, frame) -> None:
        if self.signum is not None:  # a second signal stops at once, keeping the last checkpoint
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} received twice: stopped without a new checkpoint")
        self.signum = signum
        self.logger.warning("%s received: stopping after the current step", signal.Signals(signum).name)
