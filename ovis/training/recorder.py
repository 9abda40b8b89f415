"""Where a run's outputs go: ``metrics.jsonl`` (always), TensorBoard event files (when
TensorBoard is installed; ``torch.utils.tensorboard.SummaryWriter``); the run log is
``ovis.run_folder.run_logger``'s.

Metrics are addressed as ``<split>:<group>/<key>`` (``train:loss/L_k``): the split is the
TensorBoard writer (sub-folder ``train/``, ``test/``, ``valid/``, ``online/``) and the ``split``
field of ``metrics.jsonl`` (format in ``ovis.records``). ``train``, ``test`` and ``valid`` hold
the periodic evaluations; ``online`` the training estimator's own diagnostics
averaged over the steps since the previous evaluation.
"""
import importlib.util
import os
from typing import Dict, Optional

import numpy as np

from ovis.records import MetricsWriter, rewrite_metrics

FINAL_SPLIT = "valid"  # logged once, by the final validation pass


class RunRecorder:
    """Records metrics and images of one run.

    ``resume_step``: the step of the checkpoint a resumed run starts from. Records logged after
    it by the interrupted process are dropped from ``metrics.jsonl`` and TensorBoard is told to
    purge them, so the resumed curves equal an unbroken run's. A final validation record is
    dropped too: the resumed run writes its own when it ends."""

    def __init__(self, run_dir: str, resume_step: Optional[int] = None, tensorboard: bool = True):
        self.run_dir = run_dir
        self.metrics = MetricsWriter(run_dir)
        self.purge_step = None if resume_step is None else resume_step + 1
        if resume_step is not None:
            self.metrics.truncate_after(resume_step)
            rewrite_metrics(run_dir, lambda record: record["split"] != FINAL_SPLIT)
        self._writers = {}
        self.tensorboard = tensorboard and importlib.util.find_spec("tensorboard") is not None

    def _writer(self, split: str):
        """The ``SummaryWriter`` of ``split`` (sub-folder of the run), or None without TensorBoard."""
        if not self.tensorboard:
            return None
        if split not in self._writers:
            from torch.utils.tensorboard import SummaryWriter  # imported on first use: ~1 s

            self._writers[split] = SummaryWriter(os.path.join(self.run_dir, split), purge_step=self.purge_step)
        return self._writers[split]

    def log_metrics(self, step: int, split: str, values: Dict[str, float], epoch: Optional[int] = None) -> None:
        self.metrics.write(step, split, values, epoch=epoch)
        writer = self._writer(split)
        if writer is not None:
            for key, value in values.items():
                writer.add_scalar(key, value, step)
            writer.flush()

    def log_image(self, step: int, split: str, tag: str, grid: np.ndarray) -> None:
        """``grid``: ``[H, W, C]`` uint8 image."""
        writer = self._writer(split)
        if writer is not None:
            writer.add_image(tag, grid, step, dataformats="HWC")
            writer.flush()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers = {}

