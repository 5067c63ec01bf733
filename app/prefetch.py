"""A head start for the run a user is most likely to open next: while the runs table is on
screen, the newest runs are read in the background, so that clicking one shows its charts without
first waiting for its read. With the metrics cache (trainer/rundir/metrics_cache.py) that read is
short for a run of any length; it matters for a run opened for the first time, whose whole
metrics.jsonl is parsed (and cached). Only the newest few are read, once per process.

    prefetch.start([info.run_id for info in infos])
"""

from __future__ import annotations

import os
import threading

from app import state
from trainer.errors import RunIdError

NEWEST = 2  # runs read ahead: each holds its cache's summaries and the rows not cached yet
_lock = threading.Lock()
_started: set[str] = set()


def start(run_ids: list[str]) -> list[threading.Thread]:
    """Read the first NEWEST of run_ids in background threads, each at most once per process."""
    threads = []
    for run_id in run_ids[:NEWEST]:
        try:
            path = os.path.abspath(state.run_dir_of(run_id))
        except RunIdError:
            continue
        with _lock:
            if path in _started:
                continue
            _started.add(path)
        thread = threading.Thread(target=_read, args=(path,), name=f"prefetch-{run_id}", daemon=True)
        thread.start()
        threads.append(thread)
    return threads


def _read(path: str) -> None:
    try:
        # token None: a plain read, so no file watcher is started from this thread; the page's
        # first refresh then finds the reader warm and reads only what was appended since.
        state.run_reader(path).snapshot(None)
    except Exception:  # a head start only: the page reads (and reports problems) itself
        pass
