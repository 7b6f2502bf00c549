"""TensorBoard scalar events without TensorFlow, for both training backends.

The trainer writes its scalars (loss, learning rate, images/s, evaluation top-1/top-5) to
``<model_dir>/train/`` and ``<model_dir>/eval/`` as TensorBoard event files on the TensorFlow
and the JAX backend alike; the JAX path runs where TensorFlow is absent (the GPU machine), so
the files are written here, with the standard library only:

* an event file is a sequence of TFRecords (``uint64`` length, masked CRC-32C of the length,
  the bytes, masked CRC-32C of the bytes; ``tensorflow/core/lib/io/record_writer.cc``);
* each record is an ``Event`` protocol buffer (``tensorflow/core/util/event.proto``): the
  first holds ``file_version = "brain.Event:2"``, the others a ``Summary`` with one value per
  scalar, written as TF 2's ``tf.summary.scalar`` writes it: a rank-0 float ``TensorProto``
  and ``SummaryMetadata`` naming the ``scalars`` plugin (so ``tf.make_ndarray(value.tensor)``
  and TensorBoard read it as they read TensorFlow's own files).

Only the chief writes (other workers of a multi-worker run pass ``enabled=False``).
"""
from __future__ import annotations

import os
import socket
import struct
import time
from typing import Dict, Optional

FILE_VERSION = b"brain.Event:2"
_DT_FLOAT = 1


def _crc32c_table():
    poly, table = 0x82F63B78, []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord framing uses it."""
    crc = 0xFFFFFFFF
    for b in data:
        crc = _TABLE[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, its masked CRC."""
    length = struct.pack("<Q", len(data))
    return (length + struct.pack("<I", masked_crc32c(length)) + data
            + struct.pack("<I", masked_crc32c(data)))


# ---- protocol-buffer encoding (the few wire types an Event of scalars needs) -------------
def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1  # negative int64 as two's complement, as protobuf does
    while True:
        bits, n = n & 0x7F, n >> 7
        out.append(bits | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint((field << 3) | wire)


def _bytes_field(field: int, payload: bytes) -> bytes:
    return _key(field, 2) + _varint(len(payload)) + payload


def _scalar_value(tag: str, value: float) -> bytes:
    """``Summary.Value`` {tag, tensor: rank-0 DT_FLOAT, metadata: plugin "scalars"}."""
    tensor = (_key(1, 0) + _varint(_DT_FLOAT)          # TensorProto.dtype
              + _bytes_field(2, b"")                     # tensor_shape: rank 0
              + _bytes_field(5, struct.pack("<f", value)))  # float_val (packed)
    metadata = _bytes_field(1, _bytes_field(1, b"scalars"))  # plugin_data.plugin_name
    return _bytes_field(1, tag.encode()) + _bytes_field(8, tensor) + _bytes_field(9, metadata)


def encode_event(step: int, wall_time: float, scalars: Optional[Dict[str, float]] = None,
                 file_version: Optional[bytes] = None) -> bytes:
    """An ``Event`` message: wall_time (1, double), step (2, int64), file_version (3) or a
    summary (5) of scalar values."""
    out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(int(step))
    if file_version is not None:
        out += _bytes_field(3, file_version)
    if scalars:
        summary = b"".join(_bytes_field(1, _scalar_value(k, float(v))) for k, v in scalars.items())
        out += _bytes_field(5, summary)
    return out


class ScalarWriter:
    """Appends scalar summaries to one new event file in ``logdir`` (created on first write)."""

    def __init__(self, logdir: str, enabled: bool = True):
        self.logdir, self.enabled = logdir, enabled
        self._file = None

    def _open(self):
        os.makedirs(self.logdir, exist_ok=True)
        now = time.time()
        name = f"events.out.tfevents.{int(now)}.{socket.gethostname()}.{os.getpid()}.{id(self)}.v2"
        self._file = open(os.path.join(self.logdir, name), "ab")
        self._file.write(tfrecord(encode_event(0, now, file_version=FILE_VERSION)))

    def scalars(self, values: Dict[str, float], step: int) -> None:
        if not self.enabled or not values:
            return
        if self._file is None:
            self._open()
        self._file.write(tfrecord(encode_event(step, time.time(), values)))
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
