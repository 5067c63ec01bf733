"""JSON lines, the one way any layer reads them: a record is a line holding one JSON object.

    records, malformed = parse_lines(block)   # complete lines only; blank ones are skipped
    read_records(path)                        # a whole file; missing reads as empty
    tail = JsonlTail(path); tail.poll()       # only the records completed since the last poll

A torn last line (no newline yet: the writer is mid-line, or died there) is never a record: it
waits until it is completed. A line that is not a JSON object is skipped and counted.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

try:  # ~4x faster than json.loads on a metrics row: the live doctor parses every row of a run
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - requirements.txt has orjson; json reads the same records
    _loads = json.loads


def parse_record(line: bytes | str) -> dict | None:
    """The JSON object on this line, or None if it holds anything else (or is not JSON)."""
    try:
        record = _loads(line)
    except ValueError:  # orjson refuses NaN/Infinity (Python's json writes them), and ints past 64 bits
        try:
            record = json.loads(line)
        except ValueError:  # also UnicodeDecodeError
            return None
    return record if isinstance(record, dict) else None


def parse_lines(block: bytes, contains: bytes | None = None) -> tuple[list[dict], int]:
    """(records, malformed lines) of the complete lines in block; with `contains`, only the lines
    holding those bytes are parsed (a cheap filter before json.loads)."""
    records, malformed = [], 0
    lines = block.split(b"\n")
    for line in lines[:-1]:  # the last piece has no newline: torn, or empty
        if not line.strip() or (contains is not None and contains not in line):
            continue
        record = parse_record(line)
        if record is None:
            malformed += 1
        else:
            records.append(record)
    return records, malformed


def read_records(path: str | Path, contains: bytes | None = None) -> list[dict]:
    """Every complete record of a JSON-lines file; a missing or unreadable file reads as empty."""
    try:
        block = Path(path).read_bytes()
    except OSError:
        return []
    return parse_lines(block, contains)[0]


class JsonlTail:
    """Incremental reader of one jsonl file: each poll returns only records completed since the last.

    It remembers its byte offset and the file's identity: (st_dev, st_ino), plus its first bytes
    because a deleted file's inode is often reused at once by the next file created. When the file
    was replaced (a resume rewrites metrics.jsonl through os.replace), shrank, or was rewritten in
    place (its head changed, or the byte before the offset is no longer a newline), it starts over
    from byte 0: `was_reset` is True after that poll and `resets` counts it, so a caller knows to
    drop what it held.
    """

    HEAD_BYTES = 64

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.offset = 0
        self.malformed = 0  # lines of the current file that were not a JSON object
        self.resets = 0
        self.was_reset = False  # did the last poll start over?
        self.pending = 0  # bytes past the last complete line: a line being written, or torn for good
        self._identity: tuple[int, int] | None = None
        self._head = b""  # the file's first bytes (up to HEAD_BYTES) as last read

    def poll(self) -> list[dict]:
        """New complete records, in file order; malformed lines are skipped and counted."""
        records, malformed = parse_lines(self.poll_block())
        self.malformed += malformed
        return records

    @property
    def identity(self) -> tuple[int, int] | None:
        """(st_dev, st_ino) of the file the last poll read, None before one found it."""
        return self._identity

    def start_at(self, offset: int) -> None:
        """Take the file as already read up to offset (a line end; a cache covered it): the next
        poll reads from there, or from byte 0 if the file is not the one it was."""
        try:
            with open(self.path, "rb") as f:
                stat = os.fstat(f.fileno())
                self._identity = (stat.st_dev, stat.st_ino)
                self._head = os.pread(f.fileno(), min(self.HEAD_BYTES, offset), 0)
        except OSError:
            return
        self.offset = offset

    def poll_block(self, limit: int | None = None) -> bytes:
        """The raw bytes of the new complete lines (ending with a newline), b"" if none; with limit,
        about that many at most (more only when one line is longer), the rest at the next poll, as
        a bytearray."""
        self.was_reset = False
        try:
            f = open(self.path, "rb")
        except OSError:  # missing, run directory deleted or renamed: keep what we had
            self.pending = 0
            return b""
        with f:
            stat = os.fstat(f.fileno())
            identity = (stat.st_dev, stat.st_ino)
            if self._identity is not None and (identity != self._identity or self._rewritten(f, stat.st_size)):
                self._start_over()
            self._identity = identity
            self.pending = max(0, stat.st_size - self.offset)
            if stat.st_size <= self.offset:
                return b""
            f.seek(self.offset)
            if limit is None:
                data = f.read()
            else:
                # A bytearray, so that the torn end of the piece is cut off in place, not copied.
                data = bytearray(min(limit, stat.st_size - self.offset))
                del data[f.readinto(data) :]
                if b"\n" not in data:
                    data += f.read()  # one line longer than limit: read it whole
        end = data.rfind(b"\n") + 1
        self.pending = len(data) - end
        if end == 0:
            return b""  # only a torn line so far
        if len(self._head) < self.HEAD_BYTES:
            self._head = bytes(self._head + data[: self.HEAD_BYTES])[: min(self.HEAD_BYTES, self.offset + end)]
        self.offset += end
        if end == len(data):
            return data
        if isinstance(data, bytearray):
            del data[end:]
            return data
        return data[:end]

    def _rewritten(self, f, size: int) -> bool:
        if size < self.offset:
            return True
        if self.offset == 0:
            return False
        fd = f.fileno()
        return os.pread(fd, 1, self.offset - 1) != b"\n" or os.pread(fd, len(self._head), 0) != self._head

    def _start_over(self) -> None:
        self.offset = 0
        self._head = b""
        self.malformed = 0
        self.resets += 1
        self.was_reset = True
