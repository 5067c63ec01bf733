"""A run directory cut back to the checkpoint a resume starts from (docs/run-format.md, "Resume").

    cut_back(run_dir, 1000)   # rows past step 1000, torn last lines and dead writers' temp files go

Only the process holding the run's writer lock (trainer.rundir.lock) may call it: nobody else is
writing, so every temp file here is a leftover of a process that was killed mid-write.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import parse_record


def truncate_after_step(path: Path, last_step: int) -> int:
    """Drop lines whose step is past last_step (used on resume); returns lines dropped.

    The kept lines are written to a new file that replaces the old one, so a tail reader sees a
    new inode and starts over instead of mixing old and new lines.
    """
    if not path.exists():
        return 0
    kept, dropped = [], 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                dropped += 1  # a torn last line from a crash
                continue
            record = parse_record(raw)
            if record is None:
                kept.append(raw)  # not ours to judge; keep it
                continue
            step = record.get("step")
            if isinstance(step, int) and step > last_step:
                dropped += 1
            else:
                kept.append(raw)
    if dropped:
        tmp = path.with_name(f".{path.name}.truncate{rf.TEMP_SUFFIX}")
        with open(tmp, "wb") as f:
            f.writelines(kept)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return dropped


def cut_torn_tail(path: Path) -> int:
    """Cut a torn last line (a crash mid-write) off a file that is only ever appended to, such as
    events.jsonl, so the next line does not land on its end; returns the bytes cut. In place: a
    tail reader never read the torn bytes, so its offset stays valid."""
    try:
        with open(path, "rb+") as f:
            size = f.seek(0, os.SEEK_END)
            if size == 0:
                return 0
            start = max(0, size - (1 << 16))
            while True:  # the last newline, read backwards in 64 KB pieces
                f.seek(start)
                piece = f.read(size - start)
                end = piece.rfind(b"\n")
                if end >= 0 or start == 0:
                    keep = start + end + 1
                    break
                start = max(0, start - (1 << 16))
            if keep < size:
                f.truncate(keep)
            return size - keep
    except FileNotFoundError:
        return 0


def remove_temp_files(run_dir: Path) -> list[str]:
    """Delete the temp files of atomic writes that never finished (a kill -9 between write and
    rename: a checkpoint's can be as big as the checkpoint); returns their names."""
    removed = []
    for folder in (run_dir, run_dir / rf.CHECKPOINT_DIR):
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name.startswith(".") and path.name.endswith(rf.TEMP_SUFFIX) and path.is_file():
                path.unlink(missing_ok=True)
                removed.append(path.name)
    return removed


def cut_back(run_dir: Path, step: int) -> None:
    """Rows of metrics, grads and samples past step dropped; events keep their history but lose a
    torn last line; leftover temp files deleted."""
    for name in (rf.METRICS_FILE, rf.GRADS_FILE, rf.SAMPLES_FILE):
        truncate_after_step(run_dir / name, step)
    cut_torn_tail(run_dir / rf.EVENTS_FILE)
    remove_temp_files(run_dir)
