"""TensorBoard event files with scalars and images, without ``torch.utils.tensorboard``.

``torch.utils.tensorboard.SummaryWriter`` imports TensorBoard's TensorFlow stub, which pulls
in ``boto3`` and costs about 15 MB of resident memory; this writer needs only TensorBoard's
protocol buffer classes (about 2 MB). Files follow TensorBoard's format: one
``events.out.tfevents.<time>.<host>.<pid>.<n>`` file per writer, a sequence of TFRecords
(``uint64 length``, masked CRC-32C of the length, the serialised ``Event``, masked CRC-32C of
the event; all little-endian), the first event naming the file version.
"""
import io
import itertools
import os
import socket
import struct
import time
from typing import Optional

import numpy as np

FILE_VERSION = "brain.Event:2"
_file_counter = itertools.count()


def _crc32c_table():
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1  # Castagnoli polynomial, reflected
        table.append(crc)
    return table


_CRC32C_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) of ``data``, as TFRecords use it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    """TFRecord's masked CRC: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tensorboard_available() -> bool:
    try:
        import tensorboard.compat.proto.event_pb2  # noqa: F401
    except ImportError:
        return False
    return True


class EventWriter:
    """Writes scalars and images of one split to ``log_dir`` (created if needed).

    ``purge_step``: a resumed run's first step; TensorBoard then discards the events at or
    after it that an interrupted process wrote to earlier files of ``log_dir``.
    """

    def __init__(self, log_dir: str, purge_step: Optional[int] = None):
        from tensorboard.compat.proto import event_pb2, summary_pb2

        self._event_pb2, self._summary_pb2 = event_pb2, summary_pb2
        os.makedirs(log_dir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}.{os.getpid()}.{next(_file_counter)}"
        self.path = os.path.join(log_dir, name)
        self._file = open(self.path, "wb")
        self._write(event_pb2.Event(wall_time=time.time(), file_version=FILE_VERSION))
        if purge_step is not None:
            self._write(event_pb2.Event(wall_time=time.time(), step=purge_step,
                                        session_log=event_pb2.SessionLog(status=event_pb2.SessionLog.START)))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        self._add_summary(self._summary_pb2.Summary.Value(tag=tag, simple_value=float(value)), step)

    def add_image(self, tag: str, image: np.ndarray, step: int) -> None:
        """``image``: ``[H, W, C]`` uint8 (C = 1, 3 or 4), stored as PNG."""
        from PIL import Image

        height, width, channels = image.shape
        buffer = io.BytesIO()
        Image.fromarray(image[:, :, 0] if channels == 1 else image).save(buffer, format="PNG")
        encoded = self._summary_pb2.Summary.Image(height=height, width=width, colorspace=channels,
                                                  encoded_image_string=buffer.getvalue())
        self._add_summary(self._summary_pb2.Summary.Value(tag=tag, image=encoded), step)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def _add_summary(self, value, step: int) -> None:
        summary = self._summary_pb2.Summary(value=[value])
        self._write(self._event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def _write(self, event) -> None:
        data = event.SerializeToString()
        header = struct.pack("<Q", len(data))
        self._file.write(header + struct.pack("<I", masked_crc32c(header)) + data
                         + struct.pack("<I", masked_crc32c(data)))
