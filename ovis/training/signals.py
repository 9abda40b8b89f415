"""SIGINT / SIGTERM during training: finish the current step, checkpoint, then stop.

A first signal sets a flag that the loop checks after every step (``StopRequests.check``
raises ``AbortRequested`` once the checkpoint is saved). A second SIGINT (Ctrl-C twice) stops at
once with ``KeyboardInterrupt``, keeping the last checkpoint, except while a checkpoint or the
outcome marker is being written (``StopRequests.writing``): that write finishes first. Repeated
SIGTERMs never stop at once: the kernel sends one per exiting thread of a killed manager
(``PR_SET_PDEATHSIG`` follows the thread that started the run), and Slurm follows its SIGTERM with
SIGKILL anyway."""
import contextlib
import signal
import threading
from typing import Dict, Iterator, Optional

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
        self._writing = 0

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

    @contextlib.contextmanager
    def writing(self) -> Iterator[None]:
        """A block (checkpoint, outcome marker) that no second signal interrupts."""
        self._writing += 1
        try:
            yield
        finally:
            self._writing -= 1

    def check(self, step: int, epoch: int) -> None:
        """Raise ``AbortRequested`` if a signal arrived (call it after saving the checkpoint)."""
        if self.signum is not None:
            name = signal.Signals(self.signum).name
            raise AbortRequested(f"{name} received: stopped at step {step} (epoch {epoch}); "
                                 f"the checkpoint of this step is saved, --resume continues the run")

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            self.logger.warning("%s received: stopping after the current step", name)
        elif signum == signal.SIGINT and not self._writing:  # Ctrl-C twice: stop now
            raise KeyboardInterrupt(f"{name} received twice: stopped without a new checkpoint")
        else:
            self.logger.warning("%s received again: ignored, the run is already stopping after %s", name,
                                "this write" if self._writing else "the current step and its checkpoint")
