"""The run writer: the one way anything writes a run directory (docs/run-format.md).

Our trainer uses it, and so can your own training script:

    from trainer.rundir.writer import open_run
    run = open_run("runs", "my-run", config={"lr": 3e-4})
    for step in range(1000):
        ...
        run.log(step, {"train/loss": loss.item(), "lr": lr})
    run.finish()

Lines are buffered in memory and flushed by a daemon thread at least once a second (and on
finish); the same thread refreshes the status.json heartbeat. Nothing else shares state with the
training loop.
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

import trainer

try:  # ~15x faster than json for a row of floats, and it already writes NaN/inf as null
    import orjson
except ImportError:  # pragma: no cover - the stdlib encoder below writes equivalent JSON, ~4x slower
    orjson = None

from trainer.errors import RunExists
from trainer.rundir import faults, lock, stop_request
from trainer.rundir import run_format as rf
from trainer.rundir.cutback import cut_back, truncate_after_step  # noqa: F401  (documented here)
from trainer.rundir.disk import Reserve
from trainer.rundir.files import atomic_write_text

FLUSH_SECONDS = 1.0
# Flush early when this many lines are waiting, so memory stays bounded in a tight loop.
MAX_BUFFERED_LINES = 20_000


def _finite_or_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# One encoder for every line: json.dumps with separators builds a new encoder per call.
_JSON_ENCODE = json.JSONEncoder(separators=(",", ":")).encode


def _dumps_json(record: dict) -> bytes:
    line = _JSON_ENCODE(record)
    # json writes NaN/Infinity, which is not JSON: rare, so only then rebuild with nulls.
    if "NaN" in line or "Infinity" in line:
        line = _JSON_ENCODE(_nan_to_null(record))
    return line.encode("utf-8")


def _dumps(record: dict) -> bytes:
    """One compact JSON line (no newline); non-finite floats become null."""
    if orjson is not None:
        try:
            return orjson.dumps(record)
        except TypeError:  # what orjson refuses (ints past 64 bits, non-str keys): same as json
            pass
    return _dumps_json(record)


def _dumps_rows(records: list[dict]) -> bytes:
    """Flat records, each starting with "step", as JSON lines joined by newlines (none at the end).

    One orjson call for all of them, cut into lines where one record ends and the next begins: a
    string's quotes are escaped, so '},{"step":' occurs nowhere else in a list of flat records. A
    call per record costs ~4 us a row when its bytes are kept until the flush, this ~0.5 us."""
    if orjson is not None:
        try:
            return orjson.dumps(records)[1:-1].replace(b'},{"step":', b'}\n{"step":')
        except TypeError:  # what orjson refuses: each record as _dumps writes it
            pass
    return b"\n".join(_dumps(record) for record in records)


def _nan_to_null(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_null(v) for v in value]
    return _finite_or_none(value)


# Values written as they are; anything else goes through _as_scalar (checked by exact type: fast).
_PLAIN_SCALARS = frozenset((float, int, bool, type(None)))


def _as_scalar(key: str, value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)  # int subclasses (IntEnum...) as plain ints
    if not isinstance(value, (str, bytes)):
        try:
            return float(value)  # 0-d or 1-element tensors, numpy scalars
        except (TypeError, ValueError, RuntimeError):
            pass
    raise TypeError(
        f"metric {key!r} has value {value!r} of type {type(value).__name__}, which is not a scalar; "
        "log one number per key (e.g. loss.item()) and put text in log_sample or event"
    )


class RunWriter:
    """Appends to a run directory's jsonl files and keeps status.json current."""

    def __init__(
        self, run_dir: Path, parent: str | None = None, step: int = 0, writer_lock: lock.WriterLock | None = None
    ):
        self.run_dir = Path(run_dir)
        self.run_id = self.run_dir.name
        self._lock = threading.Lock()
        self._buffers: dict[str, list[bytes]] = {}
        self._buffered = 0
        self._files: dict[str, Any] = {}
        self._stop = threading.Event()
        self._closed = False
        self._writer_lock = writer_lock  # open_run's: released when the run ends
        self._failure: OSError | None = None  # a background write that failed, raised at the next log call
        self._reserve = Reserve(self.run_dir)
        proc = psutil.Process()
        self._status = {
            "format_version": rf.FORMAT_VERSION,
            "run_id": self.run_id,
            "state": rf.STARTING,
            "step": step,
            "pid": proc.pid,
            "pid_create_time": proc.create_time(),
            "argv": list(sys.argv),
            "host": socket.gethostname(),
            "started": time.time(),
            "updated": time.time(),
            "parent": parent,
            "message": "",
        }
        self._stop_watch = stop_request.Watch(
            self.run_dir, proc.pid, self._status["pid_create_time"], trainer.PROCESS_STARTED
        )
        # A request left for a process that has ended is nobody's now; one made while this process
        # was starting (Stop pressed during a resume's start-up) is ours and stays.
        self._stop_watch.discard_stale()
        self._write_status()
        self._thread = threading.Thread(target=self._background, name="run-writer", daemon=True)
        self._thread.start()

    # --- public API -------------------------------------------------------------------------
    def log(self, step: int, scalars: dict[str, Any], time_: float | None = None) -> None:
        """One metrics.jsonl row: {"step", "time", **scalars}; non-finite values become null."""
        self.log_rows([(step, scalars, time.time() if time_ is None else time_)])

    def log_rows(self, rows: list[tuple[int, dict[str, Any], float]]) -> None:
        """Many metrics.jsonl rows, (step, scalars, time) each, as log() writes them but encoded
        together (trainer.init's background flush writes a second's rows at once)."""
        if not rows:
            return
        records = []
        for step, scalars, time_ in rows:
            record = {"step": int(step), "time": time_}
            record.update(scalars)
            if not _PLAIN_SCALARS.issuperset(map(type, scalars.values())):
                for key, value in scalars.items():
                    if type(value) not in _PLAIN_SCALARS:
                        record[key] = _as_scalar(key, value)
            records.append(record)
        self.log_records(records)

    def log_records(self, records: list[dict]) -> None:
        """metrics.jsonl rows made by the caller: each {"step": int, "time": float, **scalars}, in
        that order, every value a Python float, int, bool or None (trainer.init's flush makes them so:
        it skips log_rows' copy and checks, ~1 us a row)."""
        if records:
            self._append_lines(rf.METRICS_FILE, [_dumps_rows(records)], rows=len(records))

    def log_sample(self, step: int, text: str | None = None, pred=None, target=None, **extra) -> None:
        """One samples.jsonl row: text for text tasks, pred/target windows for numeric tasks."""
        record: dict[str, Any] = {"step": int(step), "time": time.time()}
        if text is not None:
            record["text"] = str(text)
        if pred is not None:
            record["pred"] = [float(v) for v in pred]
        if target is not None:
            record["target"] = [float(v) for v in target]
        record.update(extra)
        self._append(rf.SAMPLES_FILE, _dumps(record))

    def log_grads(
        self, step: int, norms: dict[str, float], update_ratios: dict[str, float], mechanism: dict | None = None
    ) -> None:
        """One probe; mechanism: the weight norms, embedding norm, lr and decay fields (probes.mechanism)."""
        record = {
            "step": int(step),
            "time": time.time(),
            rf.GRAD_NORMS: {k: float(v) for k, v in norms.items()},
            rf.UPDATE_RATIOS: {k: float(v) for k, v in update_ratios.items()},
        }
        for key, value in (mechanism or {}).items():
            record[key] = {k: float(v) for k, v in value.items()} if isinstance(value, dict) else float(value)
        self._append(rf.GRADS_FILE, _dumps(record))

    def event(self, kind: str, message: str, step: int | None = None, **extra) -> dict:
        """One events.jsonl row; events are flushed at once since they are rare and important."""
        if kind not in rf.EVENT_KINDS:
            raise ValueError(f"event kind {kind!r} is not one of {', '.join(rf.EVENT_KINDS)}")
        record = {"step": self._status["step"] if step is None else int(step), "time": time.time()}
        record.update({"kind": kind, "message": message})
        record.update(extra)
        self._append(rf.EVENTS_FILE, _dumps(record))
        self.flush()
        return record

    def set_status(
        self,
        state: str | None = None,
        step: int | None = None,
        message: str | None = None,
        *,
        write: bool = True,
        **extra,
    ) -> None:
        """Update status.json; extra keys (e.g. best_val_loss) are stored beside the standard ones.
        write=False only updates what the next write (the heartbeat, within a few seconds) writes:
        a write costs an fsync (~5-10 ms on some disks)."""
        if state is not None and state not in rf.STATES:
            raise ValueError(f"state {state!r} is not one of {', '.join(rf.STATES)}")
        with self._lock:
            if state is not None:
                self._status["state"] = state
            if step is not None:
                self._status["step"] = int(step)
            if message is not None:
                self._status["message"] = message
            self._status.update(extra)
        if write:
            self._write_status()

    def stop_requested(self) -> bool:
        """True once someone asked this run to stop (the dashboard's Stop, `python -m trainer stop`):
        finish the step, save, and call finish(STOPPED). One stat call."""
        return self._stop_watch.requested()

    @property
    def status(self) -> dict:
        with self._lock:
            return dict(self._status)

    def flush(self, durable: bool = False) -> None:
        """Write the buffered lines; durable=True also fsyncs them (a checkpoint is about to commit
        them). A write that fails (a full disk) is cut back off its file, so it leaves no torn line,
        and raised; the lines of that flush are dropped."""
        with self._lock:
            buffers, self._buffers, self._buffered = self._buffers, {}, 0
            for name, lines in buffers.items():
                lines.append(b"")  # so the join ends with a newline
                self._write(name, b"\n".join(lines))
            if durable:
                for f in self._files.values():
                    os.fsync(f.fileno())

    def finish(self, state: str = rf.FINISHED, message: str = "") -> None:
        """Flush everything, write the final state and stop the background thread."""
        if self._closed:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self.flush()
        self.set_status(state=state, message=message)
        self._stop_watch.consume()  # honoured (or moot: the run ended anyway), so nobody acts on it again
        self._close()

    def fail(self, message: str, detail: str = "", **extra) -> None:
        """End the run as failed: an error event (detail, e.g. the traceback, else message) and
        status.json saying message. Never raises: it is the last word of a run that is going down,
        perhaps because the disk is full. So the reserve is freed first, making room for both; lines
        that still cannot be written are dropped (ours are past the last checkpoint: a resume drops
        them anyway)."""
        if self._closed:
            return
        self._stop.set()
        self._thread.join(timeout=5)
        self._reserve.release()
        self._failure = None
        for write in (
            self.flush,
            lambda: self.event("error", detail or message, **extra),
            lambda: self.set_status(state=rf.FAILED, message=message),
            self._stop_watch.consume,  # moot now: the run ended anyway
        ):
            try:
                write()
            except OSError:
                with self._lock:
                    self._buffers, self._buffered = {}, 0
        self._close()

    def _close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()
            self._closed = True
        self._reserve.release()
        if self._writer_lock is not None:
            self._writer_lock.release()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.finish()
        else:
            self.finish(rf.FAILED, f"{exc_type.__name__}: {exc}")
        return False

    # --- internals --------------------------------------------------------------------------
    def _append(self, name: str, line: bytes) -> None:
        self._append_lines(name, [line])

    def _append_lines(self, name: str, lines: list[bytes], rows: int | None = None) -> None:
        """lines: pieces that the flush ends with a newline each; rows: the lines they hold (one each)."""
        if self._closed:
            raise RuntimeError("this run is finished; open it again with open_run(..., resume_step=STEP) to log more")
        if self._failure is not None:
            raise self._failure
        with self._lock:
            self._buffers.setdefault(name, []).extend(lines)
            self._buffered += len(lines) if rows is None else rows
            full = self._buffered >= MAX_BUFFERED_LINES
        if full:
            self.flush()

    def _write(self, name: str, data: bytes) -> None:
        """Append data to the run's file name, whole or not at all (under self._lock)."""
        f = self._files.get(name)
        if f is None:  # unbuffered: each flush is one write, and a failed one can be cut back off
            f = self._files[name] = open(self.run_dir / name, "ab", buffering=0)
        start = os.fstat(f.fileno()).st_size
        try:
            if name == rf.METRICS_FILE:
                faults.point("flush", tear=lambda: f.write(data[: len(data) // 2]))
            view = memoryview(data)
            while view:
                view = view[f.write(view) :]
        except OSError as e:
            try:
                os.ftruncate(f.fileno(), start)  # no torn line left behind (and the space back)
            except OSError:
                pass
            if e.errno is not None and e.filename is None:
                e.filename = str(self.run_dir / name)
            raise

    def _write_status(self) -> None:
        with self._lock:
            self._status["updated"] = time.time()
            text = json.dumps(self._status, indent=1)
        atomic_write_text(self.run_dir / rf.STATUS_FILE, text)

    def _background(self) -> None:
        last_heartbeat = time.monotonic()
        while not self._stop.wait(FLUSH_SECONDS):
            try:
                self.flush()
                if time.monotonic() - last_heartbeat >= rf.HEARTBEAT_SECONDS / 2.5:
                    self._write_status()
                    last_heartbeat = time.monotonic()
            except OSError as e:  # a full disk: the training loop gets it at its next log call
                self._failure = e
                return


def open_run(
    runs_dir: str | Path,
    run_id: str,
    config: dict | None = None,
    parent: str | None = None,
    resume_step: int | None = None,
) -> RunWriter:
    """Create runs/<run_id>/ (or reopen it with resume_step) and return its writer.

    A new run refuses to overwrite an existing directory. With resume_step, rows of metrics,
    grads and samples past that step are dropped first, so a resumed run never shows a step twice.
    Either way the writer holds the run's lock (trainer.rundir.lock) until it finishes, so a second
    process starting or resuming the same run at the same time gets RunBusy and writes nothing.
    """
    run_dir = rf.run_path(runs_dir, run_id)
    if resume_step is None:
        run_dir.mkdir(parents=True, exist_ok=True)
        held = lock.hold(run_dir, "pick another --run-id")
        # A launcher may have created the directory with only the process log in it.
        if not rf.holds_only_launch_files(run_dir):
            held.release()
            raise RunExists(f"run {run_id!r} already exists in {runs_dir}; pick another --run-id or resume it")
        (run_dir / rf.CHECKPOINT_DIR).mkdir(exist_ok=True)
    else:
        held = lock.hold(run_dir, f"stop it first with `python -m trainer stop {run_id} --wait`")
        cut_back(run_dir, resume_step)
    try:
        (run_dir / rf.CONTROL_DIR).mkdir(exist_ok=True)
        if config is not None:
            atomic_write_text(run_dir / rf.CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
        return RunWriter(run_dir, parent=parent, step=resume_step or 0, writer_lock=held)
    except BaseException:
        held.release()
        raise
