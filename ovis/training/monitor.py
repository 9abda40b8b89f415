"""Training diagnostics kept on the device between reads, and the check that they stay finite."""
import math
from typing import Dict, List, Optional

import torch
from torch import Tensor

SYNC_EVERY = 50  # training steps between reads of the losses kept on the device


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite."""


class StepMonitor:
    """Diagnostics of the recent training steps, kept on the device and read every ``window`` steps.

    Each step stores the batch means of the surrogate loss (``loss/surrogate``) and of every
    training diagnostic (one row each). Reading them checks that the loss and the bound are
    finite (the error names the first bad step) and adds them to the online averages logged at
    the next evaluation under the ``online`` split (``online:loss/L_k``, ``online:reinforce/mse``:
    the training estimator's own values, at the training K and the scheduled alpha)."""

    LOSS = "loss/surrogate"
    BOUND = "loss/L_k"

    def __init__(self, device: torch.device, window: int = SYNC_EVERY):
        self.device, self.window = device, window
        self.keys: Optional[List[str]] = None
        self.values: Optional[Tensor] = None  # [keys, window]
        self.count = 0
        self.first_step = 0
        self.sums: Dict[str, float] = {}
        self.steps = 0
        self.last_finite: Optional[Dict] = None

    @property
    def full(self) -> bool:
        return self.count == self.window

    def record(self, step: int, loss: Tensor, diagnostics: Dict[str, Tensor]) -> None:
        """``step``: the global step of this loss; ``loss``: the batch-mean surrogate loss."""
        if self.keys is None:
            self.keys = [self.LOSS] + sorted(diagnostics)
            self.values = torch.zeros(len(self.keys), self.window, device=self.device)
        if self.count == 0:
            self.first_step = step
        means = [loss.detach()] + [diagnostics[key].detach().float().mean() for key in self.keys[1:]]
        self.values[:, self.count] = torch.stack(means)
        self.count += 1

    def sync(self) -> Optional[Dict[str, float]]:
        """Read the pending values; returns their means by key, or None if there were none."""
        if self.count == 0:
            return None
        rows = dict(zip(self.keys, self.values[:, :self.count].tolist()))
        losses, bounds = rows[self.LOSS], rows.get(self.BOUND, rows[self.LOSS])
        for i, (loss, bound) in enumerate(zip(losses, bounds)):
            if not (math.isfinite(loss) and math.isfinite(bound)):
                self.count = 0
                raise NonFiniteLossError(self._message(self.first_step + i, loss, bound))
            self.last_finite = {"step": self.first_step + i, "loss": loss, "L_k": bound}
        for key, values in rows.items():
            self.sums[key] = self.sums.get(key, 0.0) + sum(values)
        self.steps += self.count
        self.count = 0
        return {key: sum(values) / len(values) for key, values in rows.items()}

    def _message(self, step: int, loss: float, bound: float) -> str:
        last = self.last_finite
        previous = (f"last finite values at step {last['step']}: loss {last['loss']:.6g}, L_k {last['L_k']:.6g}"
                    if last else "no finite value was recorded before")
        return f"non-finite training loss at step {step} (loss {loss}, L_k {bound}); {previous}"

    def pop_averages(self) -> Dict[str, float]:
        """Means over the steps since the last call, by diagnostic key."""
        averages = {key: total / self.steps for key, total in self.sums.items()} if self.steps else {}
        self.sums, self.steps = {}, 0
        return averages

    def state_dict(self) -> Dict:
        return {"sums": dict(self.sums), "steps": self.steps, "last_finite": self.last_finite}

    def load_state_dict(self, state: Dict) -> None:
        self.sums, self.steps, self.last_finite = dict(state["sums"]), state["steps"], state["last_finite"]
