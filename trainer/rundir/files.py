"""Files of a run directory as files: written atomically, and a key that changes when one does.

atomic_write_text(run_dir / "status.json", text)   # readers see the old or the new file
file_key(path)                                     # (inode, mtime_ns, size), None if missing
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def atomic_write_text(path: Path, text: str) -> None:
    """Write text so readers see the old or the new file, never a half-written one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk: nothing half-written stays, and the error names the file meant
        tmp.unlink(missing_ok=True)
        if e.errno is not None:
            e.filename = str(path)
        raise


def file_key(path: Path) -> tuple | None:
    """What changes when a file changes (replaced, appended to, touched): inode, mtime and size;
    None if it is missing."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_ino, stat.st_mtime_ns, stat.st_size)
