"""A full disk: the space a run keeps back so that its failure can still be recorded, and the
message that says what happened and what to do.

    reserve = Reserve(run_dir)          # RESERVE_BYTES in <run>/.space-reserve while the run writes
    if is_disk_full(error):
        reserve.release()               # room again for the error event and the failed status.json
        message = disk_full_message(run_dir, error.filename)
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from trainer.rundir import run_format as rf

# Enough for the error event (a traceback, a few KB) and status.json, page by page.
RESERVE_BYTES = 64 * 1024
_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in _FULL


class Reserve:
    """RESERVE_BYTES written to a file beside the run's files, freed when the disk fills up."""

    def __init__(self, run_dir: str | Path):
        self.path: Path | None = Path(run_dir) / rf.RESERVE_FILE
        try:
            with open(self.path, "wb") as f:
                f.write(bytes(RESERVE_BYTES))  # written, not sparse, so the blocks are really taken
        except OSError:  # already full: nothing to keep back, and the first write will say so
            self.release()

    def release(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def disk_full_message(run_dir: str | Path, filename: str | None) -> str:
    """One line: the disk is full, where, and how to go on without losing the last checkpoint."""
    run_dir = Path(run_dir)
    what = "the run's files"
    if filename:
        path = Path(filename)
        what = str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)
    try:
        free = f"{shutil.disk_usage(run_dir).free / 1e6:.1f} MB free now"
    except OSError:
        free = "free space unknown"
    return (
        f"the disk is full (no space left on device) while writing {what} in {run_dir} ({free}); the last "
        f"whole checkpoint is kept: free some space, then resume with `python -m trainer resume {run_dir.name}`"
    )
