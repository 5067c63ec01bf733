"""The run handle of your own training loop: trainer.init() -> Run (docs/logging-api.md).

    import trainer
    with trainer.init(config={"lr": 3e-4}) as run:
        run.watch(model, every=100)
        for step in range(1000):
            loss = ...                                        # your loop, unchanged
            run.log({"train/loss": loss, "lr": 3e-4}, step=step)
            if run.should_stop():                             # the dashboard's Stop, `python -m trainer stop`
                break                                         # (save your checkpoint first)

The run directory is the one our trainer writes (docs/run-format.md), so the dashboard,
`python -m trainer list` and `diagnose` read it as they read ours; status.json says "writer": "api"
so the dashboard does not offer to resume or fork a script it cannot restart.

Threads: log(), variance() and sample() only check, detach and queue; a daemon thread drains the
queue about once a second, turns tensors into numbers there (one sync per device per flush) and
writes the rows through the RunWriter. The online doctor runs in a child process that follows the
files (doctor_process.py), so it never holds this process's GIL; the same thread hands on its
alerts: alert events and one line each on stderr; a stopping alert (doctor.stop_on, or
on_critical="stop") makes should_stop() true.
"""

from __future__ import annotations

import atexit
import collections
import math
import numbers
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

import torch
import yaml

from trainer.api.doctor_process import DoctorProcess
from trainer.api.grads import GradWatch
from trainer.api.values import PLAIN, held, numbers_in_place
from trainer.config import DoctorConfig
from trainer.doctor.base import headline
from trainer.errors import RunBusy, RunExists
from trainer.rundir import run_format as rf
from trainer.rundir.location import default_runs_dir, fresh_run_id
from trainer.rundir.writer import RunWriter, open_run
from trainer.training.doctor_hook import record_alert, stops_run
from trainer.training.probes import SystemProbe
from trainer.training.threads import ThreadShare

FLUSH_SECONDS = 1.0  # the queue is drained this often, so rows reach the files within about a second
METRICS, GRADS, SAMPLES = "metrics", "grads", "samples"


class Run:
    """One run of your own loop. Made by trainer.init(); every method is safe to call each step."""

    def __init__(
        self,
        writer: RunWriter,
        doctor: bool,
        on_critical: str,
        stop_on,
        threads: ThreadShare | None = None,
    ):
        self.writer = writer
        self.threads = threads  # this loop's share of the cores, when init(threads=...) asked for one
        self.run_id, self.run_dir = writer.run_id, writer.run_dir
        self.on_critical, self.stop_on = on_critical, set(stop_on)
        self.doctor_stop: str | None = None  # "code: message" of the alert that asks to stop
        self._stopped_by: str | None = None  # why should_stop() said True
        self._step: int | None = None  # the latest step logged
        self._max_step = 0
        self._best_val: float | None = None  # the lowest finite val/loss logged
        self._queue: collections.deque = collections.deque()  # append/popleft are thread-safe
        self._watches: list[GradWatch] = []
        self._status_written = 0.0  # time.monotonic() of the last status.json write by a drain
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()  # flush() asks for a drain now
        self._drained = threading.Condition()
        self._drains_started = self._drains_done = 0
        # CPU and RSS (a script's device is its own business); its children, the doctor's process and
        # data workers, count as its own, not as other work on the host
        self._system = SystemProbe(torch.device("cpu"), children=True)
        # the doctor reads config.yaml and the files: started after open_run wrote them
        self.doctor = DoctorProcess(self.run_dir, self._alert, self._doctor_failed) if doctor else None
        self._thread = threading.Thread(target=self._background, name="trainer-api-flush", daemon=True)
        self._thread.start()

    # --- what the loop calls ------------------------------------------------------------------
    def log(self, metrics: dict, step: int | None = None) -> None:
        """One metrics row. Values: Python numbers or one-element tensors (kept as tensors until the
        background flush: no GPU sync here). step=None: one past the previous log's step (0 first)."""
        # Every line here runs once per step, right after the step's torch work, when Python runs
        # several times slower than in a tight loop: no method calls that can be inlined, and one
        # pass over the values that settles plain numbers and CPU tensors without a call
        # (benchmarks/api_overhead.py).
        if self._closed:
            self._check_open("log")
        if self.threads is not None and self.threads.recheck():  # on this thread: OpenMP's setting is per thread
            self.writer.set_status(**self.threads.status_fields(), write=False)  # the heartbeat writes it
        if step is None:
            step = 0 if self._step is None else self._step + 1
        elif type(step) is not int:
            step = int(step)
        self._step = step
        # the row as written (a copy: the caller may reuse its dict); step and time first, so the
        # writer encodes it as it is (a key "step" or "time" of the caller's replaces ours, as ever)
        row = {"step": step, "time": time.time()}
        row.update(metrics)
        tensor_keys = None  # the keys whose values stay tensors until the flush
        for key, value in metrics.items():
            kind = type(value)
            if kind in PLAIN:
                continue
            if kind is torch.Tensor and value.is_cpu:
                # the common case (a loss on the CPU): nothing to wait for, read at once without
                # held()'s checks, which cost as much again; .item() itself refuses more than one element
                try:
                    row[key] = value.item()
                    continue
                except RuntimeError:
                    pass  # held() raises the message that names the key
            row[key] = value = held(key, value)
            if isinstance(value, torch.Tensor):
                if tensor_keys is None:
                    tensor_keys = []
                tensor_keys.append(key)
        self._queue.append((METRICS, step, row, tensor_keys))

    def variance(self, pred: torch.Tensor, target: torch.Tensor, step: int | None = None) -> None:
        """out/pred_std, out/target_std and out/variance_ratio (pred_std / target_std) of one batch:
        the figure that shows a regression collapsing to the mean (report 001). step=None: the
        latest logged step."""
        self._check_open("variance")
        with torch.no_grad():
            pred_std, target_std = pred.detach().float().std(), target.detach().float().std()
            ratio = torch.where(target_std > 0, pred_std / target_std, torch.full_like(pred_std, float("nan")))
        step = self._same_step(step)
        row = {"step": step, "time": time.time(), rf.PRED_STD: pred_std, rf.TARGET_STD: target_std}
        row[rf.VARIANCE_RATIO] = ratio
        self._queue.append((METRICS, step, row, [rf.PRED_STD, rf.TARGET_STD, rf.VARIANCE_RATIO]))

    def sample(self, text: str | None = None, pred=None, target=None, step: int | None = None, **extra) -> None:
        """One samples.jsonl record: generated text, or a short window of predictions and targets
        (lists or tensors, converted in the background). step=None: the latest logged step."""
        self._check_open("sample")
        if text is None and pred is None and target is None:
            raise TypeError("run.sample() needs text=... or pred=... and target=...")
        record = {"text": text, "pred": _window(pred), "target": _window(target), **extra}
        self._queue.append((SAMPLES, self._same_step(step), record, None))

    def watch(self, model: torch.nn.Module, every: int = 100) -> None:
        """Per-parameter gradient norms and update ratios to grads.jsonl every `every` optimizer
        steps, through optimizer hooks: the loop itself does not change (trainer/api/grads.py)."""
        self._check_open("watch")
        self._watches.append(GradWatch(model, every, self._queue_grads))

    def should_stop(self) -> bool:
        """True once the dashboard's Stop or `python -m trainer stop ID` asked, or a stopping alert
        fired: save what you need and leave the loop; finish() then records the run as stopped."""
        if self._stopped_by is None:
            if self.doctor_stop is not None:
                self._stopped_by = f"doctor: {self.doctor_stop}"
            elif self.writer.stop_requested():  # one stat call
                self._stopped_by = "stop requested (control/stop)"
        return self._stopped_by is not None

    def flush(self) -> None:
        """Write everything logged so far now, and return when it is written (else within ~1 s)."""
        self._check_open("flush")
        with self._drained:
            target = self._drains_started + 1  # a drain that starts after this call sees our rows
            self._wake.set()
            self._drained.wait_for(lambda: self._drains_done >= target or self._closed, timeout=60)

    def finish(self) -> None:
        """Flush everything and record the end: stopped if a stop was asked, else finished."""
        if self._closed:
            return
        self._close_background()
        reason = self._stop_reason()
        if reason:
            self._end(rf.STOPPED, "stop", f"stopped at step {self._max_step}: {reason}")
        else:
            self._end(rf.FINISHED, "finish", f"finished at step {self._max_step}")

    def fail(self, exc: BaseException) -> None:
        """Record the run as failed with the exception (a Ctrl-C as stopped), as the with block does."""
        if self._closed:
            return
        self._close_background()
        error = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, KeyboardInterrupt):
            self._end(rf.STOPPED, "stop", f"stopped at step {self._max_step}: interrupted (KeyboardInterrupt)")
            return
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        # the writer's fail never raises: the disk may be full, which may be why we are here
        self.writer.fail(error, tb, step=self._max_step, error=error)
        _open_runs.discard(self)

    def terminated(self, signame: str) -> None:
        """Record the run as stopped by a signal (its rows flushed), as the process is about to end."""
        if self._closed:
            return
        self._close_background()
        asked = " after a stop request it had not acted on" if self.writer.stop_requested() else ""
        self._end(rf.STOPPED, "stop", f"stopped at step {self._max_step}: {signame}{asked}")

    def __enter__(self) -> Run:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None:
            self.finish()
        else:
            self.fail(exc)
        return False  # the exception goes on to the caller

    # --- internals: the training thread ---------------------------------------------------------
    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"run.{what}() after run.finish(): call trainer.init() again to start a new run")

    def _same_step(self, step: int | None) -> int:
        return int(step) if step is not None else (self._step or 0)

    def _queue_grads(self, step, names, norms, ratios, weights, fields) -> None:
        self._queue.append((GRADS, step, (names, norms, ratios, weights, fields), None))

    # --- internals: the background thread ---------------------------------------------------------
    def _background(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_SECONDS)
            self._wake.clear()
            with self._drained:
                self._drains_started += 1
                number = self._drains_started
            self._drain_safely()
            self._poll_doctor()
            with self._drained:
                self._drains_done = number
                self._drained.notify_all()

    def _drain_safely(self) -> None:
        try:
            self._drain()
        except Exception:  # a bad record must not kill the thread that writes everything else
            print(f"trainer: could not write a record of run {self.run_id}:\n{traceback.format_exc()}", file=sys.stderr)

    def _drain(self) -> None:
        items = []
        while self._queue:
            items.append(self._queue.popleft())
        if not items:
            return
        # 1) every tensor waiting in this flush becomes a number: one sync per device and dtype
        numbers_in_place([(row, keys) for _, _, row, keys in items if keys])
        # 2) the metrics rows written in one call, in the order logged; the newest train row (else the
        # newest row) carries this process's memory and CPU and the cores other processes kept busy
        rows = [row for kind, _, row, _ in items if kind == METRICS]
        if rows:
            self._add_system(next((r for r in reversed(rows) if rf.TRAIN_LOSS in r), rows[-1]))
        self.writer.log_records(rows)
        best_before = self._best_val
        for row in rows:  # the runs table's "best val loss", as our trainer keeps it
            val = row.get(rf.VAL_LOSS)
            if isinstance(val, numbers.Real) and not isinstance(val, bool) and math.isfinite(val):
                self._best_val = float(val) if self._best_val is None else min(self._best_val, float(val))
        self._max_step = max(self._max_step, max((step for kind, step, _, _ in items if kind == METRICS), default=0))
        # 3) grads and samples
        for kind, step, payload, _ in items:
            if kind == GRADS:
                names, norms, ratios, weights, fields = payload
                norms, ratios = dict(zip(names, norms.tolist())), dict(zip(names, ratios.tolist()))
                self.writer.log_grads(step, norms, ratios, fields(weights.tolist()))
            elif kind == SAMPLES:
                record = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in payload.items()}
                self.writer.log_sample(step, **{k: v for k, v in record.items() if v is not None})
        # 4) status.json's step: its write costs an fsync (~5-10 ms, most of a run.flush()), so it is
        # written at most once per FLUSH_SECONDS; between, the writer's heartbeat writes the step
        now = time.monotonic()
        # a new best val (an eval: rare) is written at once, as our trainer writes it after each eval
        write = now - self._status_written >= FLUSH_SECONDS or self._best_val != best_before
        self._status_written = now if write else self._status_written
        self.writer.set_status(step=self._max_step, write=write, **{rf.STATUS_BEST_VAL_LOSS: self._best_val})
        self.writer.flush()

    def _add_system(self, row: dict) -> None:
        """sys/rss_mb, sys/cpu_percent, sys/other_cpu and sys/cpu_wait, as our trainer writes them with each row,
        on one row a flush (about once a second): the doctor's memory_growth and slowdown read them
        (a leak in the script; a run sharing its cores). A key the script logs itself is kept."""
        try:
            values = self._system.read()
        except Exception:  # psutil refused (a sandbox without /proc): the rows go on without them
            return
        for key, value in values.items():
            row.setdefault(key, value)

    def _poll_doctor(self) -> None:
        if self.doctor is None:
            return
        try:
            self.doctor.poll()
        except Exception:  # reading its pipe must never stop the thread that writes the rows
            self._doctor_failed("could not be read:\n" + traceback.format_exc())

    def _alert(self, alert: dict, step: int | None) -> None:
        """One alert from the doctor's process: an alert event, one line on stderr, perhaps a stop."""
        record_alert(self.writer, alert, step)
        message = " ".join(str(alert.get("message", "")).split())  # one line
        change = next((r["set"] for r in alert.get("remedy") or [] if isinstance(r, dict) and r.get("set")), None)
        tried = f" (to try in your script: {', '.join(f'{k}={v}' for k, v in change.items())})" if change else ""
        print(f"[doctor] {headline(alert)}: {message}{tried}", file=sys.stderr, flush=True)
        if stops_run(alert, self.on_critical, self.stop_on):
            self.doctor_stop = self.doctor_stop or f"{alert.get('code')}: {message}"

    def _doctor_failed(self, what: str) -> None:
        """As in our trainer: a failing doctor is off for the run, and training goes on."""
        first_line = what.splitlines()[0] if what else ""
        print(
            f"trainer: the online doctor of run {self.run_id} {first_line}; the run goes on without it",
            file=sys.stderr,
            flush=True,
        )
        message = f"online doctor {what}; it is off for this run"
        self.writer.event("alert", message, code="doctor_unavailable", severity="warning", evidence={}, remedy=[])

    # --- internals: the end -----------------------------------------------------------------------
    def _close_background(self) -> None:
        self._closed = True
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=30)
        for watch in self._watches:
            watch.close()
            if watch.steps == 0:
                print(
                    f"trainer: run.watch() saw no optimizer.step() over the model's parameters in run "
                    f"{self.run_id}, so grads.jsonl is empty; it needs a torch.optim optimizer",
                    file=sys.stderr,
                )
        self._drain_safely()
        if self.doctor is not None:  # it reads the last rows, and its last alerts are recorded
            try:
                self.doctor.close()
            except Exception:
                self._doctor_failed("could not be closed:\n" + traceback.format_exc())

    def _stop_reason(self) -> str | None:
        """Stopped: the loop was told to stop (should_stop() said True), or a stop request is waiting.
        A doctor's stop the loop never saw leaves the run finished, with the alert in its events."""
        if self._stopped_by is None and self.writer.stop_requested():
            return "stop requested (control/stop)"
        return self._stopped_by

    def _end(self, state: str, event: str | None, message: str) -> None:
        if event is not None:
            self.writer.event(event, message, step=self._max_step)
        self.writer.set_status(step=self._max_step)
        self.writer.finish(state, message)
        _open_runs.discard(self)


def _window(values):
    """A prediction/target window as it may be kept until the flush: a detached flat tensor or a list."""
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        return values.detach().float().flatten()
    return [float(v) for v in values]


def init(
    run_id: str | None = None,
    runs_dir: str | Path | None = None,
    config: dict | None = None,
    *,
    doctor: bool = True,
    on_critical: str | None = None,
    stop_on: list[str] | None = None,
    threads: str | int | None = None,
) -> Run:
    """Start a run directory for your own training loop and return its handle.

    run_id: None makes a fresh id from the script's name and the time (plain_loop-20261123-142501).
    runs_dir: None is our trainer's default ($TRAINER_RUNS_DIR, else ./runs).
    config: any dict, written to config.yaml as given (not checked against our trainer's schema).
    doctor: run the online doctor. on_critical ("off" | "stop") and stop_on (alert codes) decide
    which alerts make should_stop() true; the defaults are our trainer's (stop on non_finite).
    threads: "auto" takes this loop's share of the host's physical cores free of other work among our
    live runs, as our trainer does (torch.set_num_threads, looked at again from log() every few
    seconds; status.json records the threads and why); N takes N;
    None (the default) leaves torch's threads as they are. Call init() from the training thread,
    and under torchrun on rank 0 only (another rank opening the same run raises a RuntimeError that
    says so; each rank with a run id of its own writes a run of its own).
    """
    defaults = DoctorConfig()
    on_critical = defaults.on_critical if on_critical is None else on_critical
    if on_critical not in ("off", "stop"):
        raise ValueError(f"on_critical={on_critical!r}: use 'off' or 'stop' (stop on any critical alert)")
    config = dict(config or {})
    try:
        yaml.safe_dump(config)
    except yaml.YAMLError as e:
        raise TypeError(
            f"config cannot be written to config.yaml ({e}); use numbers, strings, lists and dicts "
            "(e.g. vars(args) for argparse, str() for paths and devices)"
        ) from None
    runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    run_id = run_id or fresh_run_id(_script_name(), runs_dir)
    try:
        writer = open_run(runs_dir, run_id, config=config)
    except (RunBusy, RunExists) as e:
        rank, world = os.environ.get("RANK", "0"), os.environ.get("WORLD_SIZE", "1")
        if world.isdigit() and int(world) > 1 and rank != "0":
            # every rank opened the same run: the refusal's "pick another run id" points the wrong way
            raise RuntimeError(
                f"trainer.init on rank {rank} of {world} (torchrun) found run {run_id!r} taken ({e}): one process "
                "writes a run, so call it on rank 0 only (`run = trainer.init(...) if dist.get_rank() == 0 else "
                "None`) and share its should_stop() with the other ranks (docs/logging-api.md), or give each "
                "rank a run id of its own"
            ) from e
        raise
    share = ThreadShare(str(threads), runs_dir, run_id) if threads is not None else None
    extra = share.status_fields() if share is not None else {}
    writer.set_status(state=rf.RUNNING, **{rf.STATUS_WRITER: rf.WRITER_API}, **extra)
    writer.event("start", f"{' '.join(writer.status['argv']) or 'python'}: trainer.init")
    run = Run(writer, doctor, on_critical, defaults.stop_on if stop_on is None else stop_on, share)
    _track(run)
    return run


def _script_name() -> str:
    name = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] not in ("", "-c", "-m") else ""
    return rf.id_part(name, limit=40) or "run"


# --- runs left open when the script ends ---------------------------------------------------------
# A script that raises without a with block: the exception hook records it as failed; one that just
# ends without finish(): atexit finishes it. Either way its last rows are flushed. A SIGTERM (a Stop
# the script did not act on within the dashboard's grace, a scheduler's preemption, `kill PID`)
# still ends the process as it always did, but first records each open run as stopped with its rows
# written, where it would otherwise be found crashed with its last second of rows lost.
_open_runs: set[Run] = set()
_previous_excepthook = None
SIGTERM_RECORD_S = 15.0  # the longest a SIGTERM waits for the runs to be recorded before it ends us


def _track(run: Run) -> None:
    global _previous_excepthook
    _open_runs.add(run)
    if _previous_excepthook is None:
        _previous_excepthook = sys.excepthook
        sys.excepthook = _fail_open_runs
        atexit.register(_finish_open_runs)
        _handle_sigterm()


def _handle_sigterm() -> None:
    """Install the SIGTERM recorder, unless the script (or its framework) handles SIGTERM itself or
    this is not the main thread (only it may set handlers)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return
    signal.signal(signal.SIGTERM, _record_then_terminate)


def _record_then_terminate(signum, frame) -> None:
    # In a thread of its own: the interrupted main thread may hold a lock the recording needs, and a
    # handler must not hang the process that was told to end.
    recorder = threading.Thread(target=_stop_open_runs, args=(signal.Signals(signum).name,), daemon=True)
    recorder.start()
    recorder.join(SIGTERM_RECORD_S)
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)  # the default action: the process ends as SIGTERM always ended it


def _stop_open_runs(signame: str) -> None:
    for run in list(_open_runs):
        run.terminated(signame)


def _fail_open_runs(exc_type, exc, tb) -> None:
    for run in list(_open_runs):
        run.fail(exc)
    _previous_excepthook(exc_type, exc, tb)


def _finish_open_runs() -> None:
    for run in list(_open_runs):
        run.finish()
