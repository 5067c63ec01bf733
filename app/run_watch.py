"""Which run files changed: one watchdog observer per process decides whether anything needs reading.

A live page refreshes every second in every open tab; most refreshes find that nothing changed.
The observer (inotify on Linux, FSEvents on macOS, ...) watches the runs directory recursively and
bumps a counter for every (run, file) that was created, modified, replaced or deleted. A caller
keeps the token it read at its last read; an equal token means nothing it cares about changed,
and it does no file I/O at all for that run.

Where the observer cannot start (inotify watch or instance limits, a file system without events,
a runs directory that does not exist yet) tokens come from os.stat of the files instead: a few
stats per run and refresh, still no reading. The observer is retried every RETRY_S seconds.

    watcher = watcher_for(runs_dir)          # shared by every session of the process
    token = watcher.token("my-run")          # changes when one of its rf.DATA_FILES does
    snapshot = reader.snapshot(token)        # the RunReader reads only if the token moved

The runs directory is never watched by Streamlit itself (.streamlit/config.toml sets
fileWatcherType = "none"); this observer is the only one, and watcher_for keeps at most one alive.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

from trainer.rundir import run_format as rf
from trainer.rundir.files import file_key

log = logging.getLogger(__name__)
# watchdog warns when a new directory's watch is added twice (its create event and the walk of its
# parent racing, as when a run directory is made and filled at once); the second add is harmless.
warnings.filterwarnings("ignore", message="Callback with id .* already exists", category=RuntimeWarning)

# A run's token covers its data files (rf.DATA_FILES: what its RunReader and the doctor read) by
# default; the runs table's covers the files its row comes from (run_info).
TABLE_FILES = (rf.STATUS_FILE, rf.CONFIG_FILE, rf.EVENTS_FILE, rf.LOG_FILE)
RUN_DIR = ""  # the run directory itself (created, deleted, renamed)
RETRY_S = 10.0
# Events can be lost (an inotify queue overflow, a directory created and filled before its watch
# was added); every RESCAN_S seconds all tokens change once, so nothing stays stale for longer.
RESCAN_S = 30.0


def _changes_content(event) -> bool:
    # Our own reads raise "opened" and "closed without writing" events: they must not count, or
    # every read would mark its file dirty again.
    return event.event_type in ("created", "modified", "moved", "deleted", "closed")


class _Counter:
    """The observer's event handler: bumps (run, top-level name) counters. Runs on its thread."""

    def __init__(self, runs_dir: Path):
        self.runs_dir = os.fsdecode(runs_dir)
        self.lock = threading.Lock()
        self.counts: dict[tuple[str, str], int] = {}
        self.listing = 0  # entries directly in the runs directory appeared or vanished
        self.lost = False  # the runs directory itself was deleted or moved: its watch is gone

    def dispatch(self, event) -> None:
        if not _changes_content(event):
            return
        src = os.fsdecode(event.src_path)
        if src == self.runs_dir and event.event_type in ("deleted", "moved"):
            self.lost = True  # the runs directory itself went away, and its watch with it
            return
        for path in (src, os.fsdecode(getattr(event, "dest_path", "") or "")):
            if path:
                self._bump(path)

    def _bump(self, path: str) -> None:
        rel = os.path.relpath(path, self.runs_dir)
        if rel == "." or rel.startswith(".."):
            return  # the directory itself (modified), or where a run was moved out to
        parts = rel.split(os.sep)
        key = (parts[0], parts[1] if len(parts) > 1 else RUN_DIR)
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + 1
            if len(parts) == 1:
                self.listing += 1


def _start_observer(runs_dir: Path, handler: _Counter):
    # Lazy for start-up cost alone: watchdog loads its inotify bindings, needed once per process.
    from watchdog import events as ev
    from watchdog.observers import Observer

    # Asking only for these keeps inotify from waking us for opens and reads (ours included).
    wanted = [
        ev.FileCreatedEvent, ev.FileModifiedEvent, ev.FileMovedEvent, ev.FileDeletedEvent, ev.FileClosedEvent,
        ev.DirCreatedEvent, ev.DirMovedEvent, ev.DirDeletedEvent,
    ]  # fmt: skip
    observer = Observer()
    observer.daemon = True
    try:
        # inotify_init and the watches happen here: this is where inotify's limits raise OSError.
        observer.schedule(handler, str(runs_dir), recursive=True, event_filter=wanted)
        observer.start()
    except BaseException:
        observer.stop()  # whatever did start (an emitter thread) must not outlive the failure
        raise
    return observer


class RunsWatcher:
    """Change tokens for the runs under runs_dir, from filesystem events or, failing that, stats."""

    def __init__(
        self,
        runs_dir: str | Path,
        start_observer: Callable | None = _start_observer,
        rescan_s: float = RESCAN_S,
    ):
        self.runs_dir = Path(os.path.abspath(runs_dir))  # abspath: no syscalls, unlike resolve()
        self._start = start_observer  # None: stat polling only
        self._rescan_s = rescan_s
        self._lock = threading.Lock()
        self._observer = None
        self._counter: _Counter | None = None
        self._epoch = 0  # bumped when the observer (re)starts: counters restart from zero
        self._born = time.monotonic()
        self._retry_at = 0.0
        self._noted: dict[str, int] = {}  # changes the app made itself, by run ("" = the listing)
        self.fallback_reason = "" if start_observer else "events disabled"
        self._ensure_observer()

    @property
    def mode(self) -> str:
        """'events' while the observer runs, else 'polling' (asking may (re)start the observer)."""
        return "events" if self._ensure_observer() is not None else "polling"

    def token(self, run_id: str, files: Iterable[str] = rf.DATA_FILES) -> tuple:
        """A value that changes whenever one of the run's files (or the run directory) changed."""
        files = (RUN_DIR, *files)
        counter = self._ensure_observer()
        rescan = (int((time.monotonic() - self._born) // self._rescan_s), self._noted.get(run_id, 0))
        if counter is None:
            run_dir = self.runs_dir / run_id
            return ("polling", rescan, *(file_key(run_dir / name if name else run_dir) for name in files))
        with counter.lock:
            return (self._epoch, rescan, *(counter.counts.get((run_id, name), 0) for name in files))

    def listing_token(self) -> tuple:
        """A value that changes when entries directly under the runs directory appear or vanish."""
        counter = self._ensure_observer()
        rescan = (int((time.monotonic() - self._born) // self._rescan_s), self._noted.get("", 0))
        if counter is None:
            return ("polling", rescan, file_key(self.runs_dir))
        return (self._epoch, rescan, counter.listing)

    def note_change(self, run_id: str) -> None:
        """The app itself just changed run_id (started, forked, stopped it): its next token and
        the listing's differ at once, without waiting for the file event to arrive."""
        with self._lock:
            for key in (run_id, ""):
                self._noted[key] = self._noted.get(key, 0) + 1

    def stop(self) -> None:
        """Stop the observer thread (and its inotify instance); tokens fall back to stats."""
        with self._lock:
            observer, self._observer, self._counter = self._observer, None, None
            self._start = None
            self.fallback_reason = "stopped"
        if observer is not None:
            observer.stop()
            observer.join(timeout=5)

    def _observer_alive(self) -> bool:
        observer, counter = self._observer, self._counter
        return observer is not None and observer.is_alive() and counter is not None and not counter.lost

    def _ensure_observer(self) -> _Counter | None:
        if self._observer_alive():
            return self._counter
        with self._lock:
            if self._observer_alive():
                return self._counter
            now = time.monotonic()
            if self._start is None or now < self._retry_at:
                return None
            self._retry_at = now + RETRY_S
            if self._observer is not None:  # died, or its directory was deleted: start afresh
                self._observer.stop()
                self._observer, self._counter = None, None
            if not self.runs_dir.is_dir():
                self.fallback_reason = f"{self.runs_dir} does not exist yet"
                return None
            counter = _Counter(self.runs_dir)
            try:
                observer = self._start(self.runs_dir, counter)
            except Exception as e:  # noqa: BLE001 - inotify limits (OSError), no backend, ...: poll
                self.fallback_reason = f"file events unavailable ({e}); polling with os.stat"
                log.warning("dashboard: %s", self.fallback_reason)
                return None
            self._observer, self._counter = observer, counter
            self._epoch += 1
            self.fallback_reason = ""
            return counter


# --- one watcher per process ------------------------------------------------------------------
_current: RunsWatcher | None = None
_current_lock = threading.Lock()


def watcher_for(runs_dir: str | Path) -> RunsWatcher:
    """The process's watcher for runs_dir. Asking for another directory stops the previous
    observer first (tests point every app at a new directory), so at most one is ever alive."""
    global _current
    runs_dir = Path(os.path.abspath(runs_dir))
    with _current_lock:
        if _current is not None and _current.runs_dir == runs_dir:
            return _current
        if _current is not None:
            _current.stop()
        _current = RunsWatcher(runs_dir)
        return _current


def stop_watcher() -> None:
    """Stop the process's watcher, if any (tests call this to leave no thread behind)."""
    global _current
    with _current_lock:
        if _current is not None:
            _current.stop()
        _current = None
