"""``ovis.training.recorder.RunRecorder``: ``metrics.jsonl`` and TensorBoard event files that
TensorBoard itself reads back, and the purge of the records an interrupted run wrote after its
checkpoint."""
import io

import numpy as np
import pytest
from PIL import Image

from ovis.records import iter_metric_records
from ovis.training.recorder import RunRecorder

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(log_dir):
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_tensorboard_reads_the_scalars_and_images_of_a_run(tmp_path):
    recorder = RunRecorder(str(tmp_path))
    for step in (0, 10, 20):
        recorder.log_metrics(step, "train", {"loss/L_k": -100.0 + step}, epoch=step // 10)
    grid = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)  # [H, W, C]
    recorder.log_image(20, "test", "reconstructions", grid)
    recorder.log_image(20, "test", "samples", grid[:, :, :1])
    recorder.close()
    scalars = _read(tmp_path / "train").Scalars("loss/L_k")
    assert [(s.step, s.value) for s in scalars] == [(0, -100.0), (10, -90.0), (20, -80.0)]
    images = _read(tmp_path / "test")
    image = images.Images("reconstructions")[0]
    assert (image.step, image.height, image.width) == (20, 6, 8)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(image.encoded_image_string))), grid)
    assert images.Images("samples")[0].width == 8
    assert [r["values"]["loss/L_k"] for r in iter_metric_records(str(tmp_path))] == [-100.0, -90.0, -80.0]


def test_a_resumed_run_drops_what_was_logged_after_its_checkpoint(tmp_path):
    first = RunRecorder(str(tmp_path))
    for step in (0, 10, 20, 30):
        first.log_metrics(step, "train", {"x": float(step)})
    first.log_metrics(30, "valid", {"x": 1.0})
    first.close()
    resumed = RunRecorder(str(tmp_path), resume_step=10)  # resumed from the checkpoint of step 10
    resumed.log_metrics(20, "train", {"x": 200.0})
    resumed.close()
    assert [(s.step, s.value) for s in _read(tmp_path / "train").Scalars("x")] == [(0, 0.0), (10, 10.0), (20, 200.0)]
    assert [(r["step"], r["split"], r["values"]["x"]) for r in iter_metric_records(str(tmp_path))] == [
        (0, "train", 0.0), (10, "train", 10.0), (20, "train", 200.0)]
