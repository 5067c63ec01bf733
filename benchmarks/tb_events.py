"""Write a TensorBoard event file of N scalars quickly, for benchmarks/logger_reader.py only.

TensorBoard's own writer computes a pure-Python CRC32C per record (~8,000 scalars/s here), so
writing the 1,000,000 scalars its reader is timed on would take minutes. This writes byte for byte
the records torch's SummaryWriter.add_scalar writes (an Event holding one Summary.Value with tag
and simple_value, framed as TFRecords with masked CRC32C), computing the CRCs with numpy over many
equal-length records at once. The benchmark checks the file reads back whole through
EventAccumulator, so a wrong byte here would show as a failed check, not as a fast figure.
"""

from __future__ import annotations

import struct
import time
from pathlib import Path

import numpy as np

_CASTAGNOLI = 0x82F63B78


def _crc_table() -> np.ndarray:
    table = np.zeros(256, dtype=np.uint32)
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ (_CASTAGNOLI if crc & 1 else 0)
        table[i] = crc
    return table


_TABLE = _crc_table()


def masked_crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """TFRecord's masked CRC32C of each row of a (n, length) uint8 array."""
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = _TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _frame(records: np.ndarray) -> np.ndarray:
    """TFRecord framing of equal-length records: length, crc(length), data, crc(data)."""
    n, length = records.shape
    header = np.frombuffer(struct.pack("<Q", length), dtype=np.uint8)
    header_crc = masked_crc32c_rows(header[None, :])[0]
    framed = np.empty((n, 16 + length), dtype=np.uint8)
    framed[:, :8] = header
    framed[:, 8:12] = np.frombuffer(struct.pack("<I", int(header_crc)), dtype=np.uint8)
    framed[:, 12 : 12 + length] = records
    framed[:, 12 + length :] = masked_crc32c_rows(records).astype("<u4").view(np.uint8).reshape(n, 4)
    return framed


def _scalar_records(tag: bytes, steps: np.ndarray, values: np.ndarray, wall_times: np.ndarray) -> np.ndarray:
    """Serialized Event protos for steps that share one varint length (so records share a length)."""
    step_len = len(_varint(int(steps[0])))
    value_msg_len = 2 + len(tag) + 5  # tag field, simple_value field
    summary_len = 2 + value_msg_len
    prefix_step = b"\x10"
    summary = b"\x2a" + _varint(summary_len) + b"\x0a" + _varint(value_msg_len) + b"\x0a" + _varint(len(tag)) + tag
    length = 9 + 1 + step_len + len(summary) + 5
    rows = np.empty((len(steps), length), dtype=np.uint8)
    rows[:, 0] = 0x09  # field 1 wall_time, fixed64
    rows[:, 1:9] = wall_times.astype("<f8").view(np.uint8).reshape(-1, 8)
    rows[:, 9] = prefix_step[0]  # field 2 step, varint
    remaining = steps.astype(np.uint64)
    for k in range(step_len):
        byte = (remaining & np.uint64(0x7F)).astype(np.uint8)
        remaining = remaining >> np.uint64(7)
        rows[:, 10 + k] = byte | (0x80 if k < step_len - 1 else 0)
    start = 10 + step_len
    rows[:, start : start + len(summary)] = np.frombuffer(summary, dtype=np.uint8)
    rows[:, start + len(summary)] = 0x15  # Value field 2 simple_value, fixed32
    rows[:, start + len(summary) + 1 :] = values.astype("<f4").view(np.uint8).reshape(-1, 4)
    return rows


def write_scalar_events(log_dir: Path, tag: str, values: np.ndarray) -> Path:
    """One event file holding values[i] at step i under tag; returns its path."""
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / f"events.out.tfevents.{int(time.time())}.bench"
    with open(path, "wb") as f:
        RecordWriter(f).write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2").SerializeToString())
        steps = np.arange(len(values), dtype=np.int64)
        wall_times = time.time() + steps * 1e-3
        bounds = [0, 128, 1 << 14, 1 << 21, 1 << 28]  # where the step's varint gets one byte longer
        for lo, hi in zip(bounds, bounds[1:]):
            part = slice(lo, min(hi, len(values)))
            if part.start < part.stop:
                records = _scalar_records(tag.encode(), steps[part], values[part], wall_times[part])
                f.write(_frame(records).tobytes())
    return path
