"""Training diagnostics kept on the device between reads, and the check that they stay sound
(``ovis.training.divergence``)."""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

from ovis.launch import DivergenceError, NonFiniteLossError
from ovis.training.divergence import ADVICE, impossible_values, non_finite

SYNC_EVERY = 50  # training steps between reads of the losses kept on the device


def summary(loss: Tensor, diagnostics: Dict[str, Tensor]) -> Tuple[Tensor, Tuple[str, ...]]:
    """``(row, keys)``: the batch-mean surrogate loss and the batch mean of every training
    diagnostic, ``[keys]``, and their keys (``StepMonitor.LOSS`` first, then the diagnostics' sorted)."""
    keys = tuple(sorted(diagnostics))
    with torch.no_grad():
        values = [diagnostics[key] for key in keys]
        if values and all(value.shape == values[0].shape for value in values):
            # one stack and one mean for every key: a mean per key cost as many operations per step
            # as a fifth of the estimator's forward pass
            row = torch.cat([loss.reshape(1), torch.stack(values).flatten(1).float().mean(1)])  # [keys]
        else:
            row = torch.stack([loss.reshape(())] + [value.float().mean() for value in values])  # [keys]
    return row, (StepMonitor.LOSS,) + keys


class StepMonitor:
    """Diagnostics of the recent training steps, kept on the device and read every ``window`` steps.

    Each step stores the batch means of the surrogate loss (``loss/surrogate``) and of every
    training diagnostic (one row each). Reading them checks that every value is finite and
    possible (the error names the first bad step) and adds them to the online averages logged at
    the next evaluation under the ``online`` split (``online:loss/L_k``, ``online:control_variate/mse``:
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
        self.store(step, *summary(loss, diagnostics))

    def store(self, step: int, row: Tensor, keys: Tuple[str, ...]) -> None:
        """Keep a step's ``summary`` (computed where the step is: the compiled step returns it)."""
        if self.keys is None:
            self.keys = list(keys)
            self.values = torch.zeros(len(self.keys), self.window, device=self.device)
        if self.count == 0:
            self.first_step = step
        self.values[:, self.count] = row
        self.count += 1

    def sync(self) -> Optional[Dict[str, float]]:
        """Read the pending values; returns their means by key, or None if there were none.

        Raises ``NonFiniteLossError`` at the first step with a NaN or infinite value and
        ``DivergenceError`` at the first with an impossible one (a negative ``loss/kl_q_p``)."""
        if self.count == 0:
            return None
        rows = dict(zip(self.keys, self.values[:, :self.count].tolist()))
        for i in range(self.count):
            values = {key: row[i] for key, row in rows.items()}
            bad, impossible = non_finite(values), impossible_values(values, probability_mass=False)
            if bad or impossible:
                self.count = 0
                kind, error = ("non-finite", NonFiniteLossError) if bad else ("impossible", DivergenceError)
                raise error(f"{kind} training loss at step {self.first_step + i} ({'; '.join(bad + impossible)}); "
                            f"{self._last_good()}; {ADVICE}")
            self.last_finite = {"step": self.first_step + i, "loss": values[self.LOSS],
                                "L_k": values.get(self.BOUND, values[self.LOSS])}
        for key, values in rows.items():
            self.sums[key] = self.sums.get(key, 0.0) + sum(values)
        self.steps += self.count
        self.count = 0
        return {key: sum(values) / len(values) for key, values in rows.items()}

    def _last_good(self) -> str:
        last = self.last_finite
        return (f"last good values at step {last['step']}: loss {last['loss']:.6g}, L_k {last['L_k']:.6g}"
                if last else "no good value was recorded before")

    def pop_averages(self) -> Dict[str, float]:
        """Means over the steps since the last call, by diagnostic key."""
        averages = {key: total / self.steps for key, total in self.sums.items()} if self.steps else {}
        self.sums, self.steps = {}, 0
        return averages

    def state_dict(self) -> Dict:
        return {"sums": dict(self.sums), "steps": self.steps, "last_finite": self.last_finite}

    def load_state_dict(self, state: Dict) -> None:
        self.sums, self.steps, self.last_finite = dict(state["sums"]), state["steps"], state["last_finite"]
