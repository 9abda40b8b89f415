"""``ovis.training.tensorboard``: files that TensorBoard itself reads back, with purges on resume."""
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovis.training.tensorboard import EventWriter, crc32c, masked_crc32c

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def _read(log_dir):
    accumulator = event_accumulator.EventAccumulator(str(log_dir), size_guidance={"scalars": 0, "images": 0})
    accumulator.Reload()
    return accumulator


def test_crc32c_check_values():
    assert crc32c(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    assert crc32c(b"") == 0
    assert masked_crc32c(b"") == 0xA282EAD8


def test_tensorboard_reads_scalars_and_images(tmp_path):
    writer = EventWriter(str(tmp_path / "train"))
    for step in (0, 10, 20):
        writer.add_scalar("loss/L_k", -100.0 + step, step)
    grid = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)
    writer.add_image("reconstructions", grid, 20)
    writer.add_image("samples", grid[:, :, :1], 20)
    writer.close()
    accumulator = _read(tmp_path / "train")
    scalars = accumulator.Scalars("loss/L_k")
    assert [(s.step, s.value) for s in scalars] == [(0, -100.0), (10, -90.0), (20, -80.0)]
    image = accumulator.Images("reconstructions")[0]
    assert (image.step, image.height, image.width) == (20, 6, 8)
    decoded = np.asarray(Image.open(io.BytesIO(image.encoded_image_string)))
    np.testing.assert_array_equal(decoded, grid)
    assert accumulator.Images("samples")[0].width == 8


def test_a_purge_step_drops_later_events_of_earlier_files(tmp_path):
    first = EventWriter(str(tmp_path))
    for step in (0, 10, 20, 30):
        first.add_scalar("x", float(step), step)
    first.close()
    resumed = EventWriter(str(tmp_path), purge_step=11)  # resumed from the checkpoint of step 10
    resumed.add_scalar("x", 200.0, 20)
    resumed.close()
    assert [(s.step, s.value) for s in _read(tmp_path).Scalars("x")] == [(0, 0.0), (10, 10.0), (20, 200.0)]


def test_writing_does_not_import_the_tensorflow_stub(tmp_path):
    code = ("import sys\nfrom ovis.training.tensorboard import EventWriter\n"
            f"w = EventWriter({str(tmp_path)!r}); w.add_scalar('a', 1.0, 0); w.close()\n"
            "print(any(m.startswith(('boto3', 'tensorboard.compat.tensorflow_stub', 'torch.utils.tensorboard')) "
            "for m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.strip() == "False"
