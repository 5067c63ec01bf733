"""Runs: where they live, what state they are in, and how to stop, resume or fork one.

The CLI (`python -m trainer list|stop|resume|fork`) and the dashboard both call these functions;
neither holds any logic of its own. The run directory is the source of truth (run_format.py).

    from trainer import runs
    for info in runs.list_runs(runs.default_runs_dir()):
        print(info.run_id, info.state, info.step)
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from trainer import config as C
from trainer import process
from trainer import run_format as rf
from trainer.errors import CheckpointError, ConfigError, RunExists, RunIdError, RunStateError

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "shakespeare_char.yaml"
RUNS_DIR_ENV = "TRAINER_RUNS_DIR"

# Run ids start with a readable name for the task's default data.
_TASK_PREFIX = {"char_lm": "shakespeare"}


def default_runs_dir() -> Path:
    """The runs directory: $TRAINER_RUNS_DIR, else ./runs. The only place this is decided."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs").resolve()


def new_run_id(task: str, runs_dir: str | Path | None = None, now: float | None = None) -> str:
    """A fresh id like shakespeare-20261123-142501; -2, -3, ... is added if that one is taken."""
    prefix = _TASK_PREFIX.get(task) or re.sub(r"[^A-Za-z0-9.-]+", "-", task).strip("-") or "run"
    base = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    candidate, n = base, 1
    # Ids handed out earlier count as taken too: two clicks in one second must not share a run.
    while candidate in _issued_ids or (runs_dir is not None and (Path(runs_dir) / candidate).exists()):
        n += 1
        candidate = f"{base}-{n}"
    _issued_ids.add(candidate)
    return candidate


_issued_ids: set[str] = set()


def resolve_new(
    config_path: str | Path | None, sets: list[str] | None = None, environ: dict[str, str] | None = None
) -> C.Config:
    """The config of a new run: YAML (default configs/shakespeare_char.yaml) <- environment <- --set."""
    return C.resolve(config_path or DEFAULT_CONFIG, sets, environ)


def ensure_new_run(runs_dir: str | Path, run_id: str) -> Path:
    """The path for a new run, refusing an id that is unsafe or already used.

    A directory holding only train.log is free: it is what the background launcher creates.
    """
    path = rf.run_path(runs_dir, run_id)
    if path.exists() and any(p.name != rf.LOG_FILE for p in path.iterdir()):
        raise RunExists(f"run {run_id!r} already exists in {Path(runs_dir)}; pick another --run-id")
    return path


# --- reading a run ------------------------------------------------------------------------------


def read_status(run_dir: str | Path) -> dict | None:
    """status.json as a dict, or None if it is missing or unreadable (it is replaced atomically,
    so a partial file means something else wrote it)."""
    try:
        data = json.loads((Path(run_dir) / rf.STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_config(run_dir: str | Path) -> dict | None:
    """config.yaml as a nested dict, or None if it is missing or not a mapping."""
    path = Path(run_dir) / rf.CONFIG_FILE
    if not path.is_file():
        return None
    try:
        return C.load_yaml(path)
    except ConfigError:
        return None


def _state_from_status(run_dir: Path, status: dict | None, now: float) -> str:
    if status is None:
        # Launched but the trainer has not written status.json yet (or died before it could).
        log = run_dir / rf.LOG_FILE
        if log.is_file() and now - log.stat().st_mtime < rf.STALE_AFTER_SECONDS:
            return rf.STARTING
        return rf.CRASHED
    state = status.get("state")
    if state not in rf.LIVE_STATES:
        return state if state in rf.STATES else rf.CRASHED
    updated = status.get("updated")
    fresh = isinstance(updated, (int, float)) and now - updated <= rf.STALE_AFTER_SECONDS
    if fresh:
        return state
    # Stale heartbeat: alive only if the recorded process (same pid and create time) still runs.
    # A run written on another host cannot be checked, so staleness alone decides there.
    if status.get("host") not in (None, socket.gethostname()):
        return rf.CRASHED
    return state if process.same_process(status) is not None else rf.CRASHED


def run_state(run_dir: str | Path, now: float | None = None) -> str:
    """The run's state, with "crashed" derived: a live state whose heartbeat is stale and whose
    process is gone, a zombie, or a reused pid."""
    run_dir = Path(run_dir)
    return _state_from_status(run_dir, read_status(run_dir), time.time() if now is None else now)


# events.jsonl path -> (size, mtime_ns, counts): list_runs runs every refresh, events rarely change.
_alert_cache: dict[Path, tuple[int, int, dict[str, int]]] = {}


def alert_counts(run_dir: str | Path) -> dict[str, int]:
    """Alerts in events.jsonl by severity: {"info": n, "warning": n, "critical": n}."""
    path = Path(run_dir) / rf.EVENTS_FILE
    counts = dict.fromkeys(rf.SEVERITIES, 0)
    try:
        st = path.stat()
    except OSError:
        return counts
    cached = _alert_cache.get(path)
    if cached and cached[:2] == (st.st_size, st.st_mtime_ns):
        return dict(cached[2])
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if '"alert"' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a torn last line or a stray write; the reader counts those
            if isinstance(record, dict) and record.get("kind") == "alert" and record.get("severity") in counts:
                counts[record["severity"]] += 1
    _alert_cache[path] = (st.st_size, st.st_mtime_ns, dict(counts))
    return counts


@dataclass
class RunInfo:
    """One row of `python -m trainer list` and of the dashboard's run table."""

    run_id: str
    task: str | None
    state: str
    step: int
    max_steps: int | None
    best_val_loss: float | None
    started: float | None
    updated: float | None
    parent: str | None
    pid: int | None
    alert_counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(rf.SEVERITIES, 0))
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def run_info(run_dir: str | Path, now: float | None = None) -> RunInfo:
    """What list_runs shows for one run directory."""
    run_dir = Path(run_dir)
    now = time.time() if now is None else now
    status = read_status(run_dir) or {}
    task, max_steps = status.get("task"), status.get("max_steps")
    if task is None or max_steps is None:
        cfg = read_config(run_dir) or {}
        task = task if task is not None else cfg.get("task")
        max_steps = max_steps if max_steps is not None else cfg.get("max_steps")
    best = status.get("best_val_loss")
    return RunInfo(
        run_id=run_dir.name,
        task=task,
        state=_state_from_status(run_dir, status or None, now),
        step=int(status.get("step") or 0),
        max_steps=max_steps,
        best_val_loss=float(best) if isinstance(best, (int, float)) else None,
        started=status.get("started"),
        updated=status.get("updated"),
        parent=status.get("parent"),
        pid=status.get("pid"),
        alert_counts=alert_counts(run_dir),
        message=str(status.get("message") or "") if status else last_log_line(run_dir),
    )


def last_log_line(run_dir: str | Path, tail_bytes: int = 4096) -> str:
    """The last non-empty line of train.log: why a background start failed before status.json."""
    try:
        with open(Path(run_dir) / rf.LOG_FILE, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            lines = f.read().decode("utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return next((line.strip() for line in reversed(lines) if line.strip()), "")


def is_run_dir(path: Path) -> bool:
    return (
        path.is_dir()
        and rf.RUN_ID_RE.match(path.name) is not None
        and ((path / rf.STATUS_FILE).exists() or (path / rf.CONFIG_FILE).exists() or (path / rf.LOG_FILE).exists())
    )


def list_runs(runs_dir: str | Path) -> list[RunInfo]:
    """Every run under runs_dir, newest first. A missing runs_dir has no runs."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    process.reap()  # a dashboard lists every second: collect its finished trainers there
    now = time.time()
    return newest_first([run_info(p, now) for p in runs_dir.iterdir() if is_run_dir(p)])


def newest_first(infos: list[RunInfo]) -> list[RunInfo]:
    """Runs in the order every listing shows them: latest start first, then by id."""
    return sorted(infos, key=lambda i: (i.started or 0.0, i.run_id), reverse=True)


# --- stopping -----------------------------------------------------------------------------------


def _refuse_unless_live(run_id: str, state: str, action: str) -> None:
    if state in rf.LIVE_STATES:
        return
    if state == rf.CRASHED:
        raise RunStateError(
            f"run {run_id!r} crashed (its process is gone), so there is nothing to {action}; "
            f"resume it with `python -m trainer resume {run_id}`"
        )
    raise RunStateError(f"run {run_id!r} is {state}, so there is nothing to {action}")


def request_stop(runs_dir: str | Path, run_id: str) -> Path:
    """Ask a live run to stop: it finishes the step, checkpoints, and exits with state stopped."""
    run_dir = rf.existing_run_path(runs_dir, run_id)
    if read_status(run_dir) is None:
        # A stop file in a directory holding only train.log would make the writer refuse it.
        raise RunStateError(f"run {run_id!r} has not written its status yet; try again in a few seconds")
    _refuse_unless_live(run_id, run_state(run_dir), "stop")
    control = run_dir / rf.CONTROL_DIR
    control.mkdir(exist_ok=True)
    stop_file = control / rf.STOP_FILE
    stop_file.write_text(f"requested at {time.time():.3f} by pid {os.getpid()}\n", encoding="utf-8")
    return stop_file


def enforce_stop(runs_dir: str | Path, run_id: str, grace_s: float = 10.0) -> bool:
    """Non-blocking escalation for a UI refresh loop: SIGTERM the trainer if a stop was requested
    more than grace_s ago and the run is still live. True if a signal was sent."""
    run_dir = rf.existing_run_path(runs_dir, run_id)
    stop_file = run_dir / rf.CONTROL_DIR / rf.STOP_FILE
    try:
        age = time.time() - stop_file.stat().st_mtime
    except OSError:
        return False
    if age < grace_s or run_state(run_dir) not in rf.LIVE_STATES:
        return False
    return process.safe_terminate(read_status(run_dir))


def _wait_not_live(run_dir: Path, timeout_s: float, poll_s: float = 0.1) -> str:
    deadline = time.monotonic() + timeout_s
    state = run_state(run_dir)
    while state in rf.LIVE_STATES and time.monotonic() < deadline:
        time.sleep(poll_s)
        state = run_state(run_dir)
    return state


def stop(runs_dir: str | Path, run_id: str, grace_s: float = 10.0) -> str:
    """Stop a live run and wait for it: the stop file first; if the run is still live after
    grace_s, SIGTERM, but only to a process whose pid, create time and command line match
    status.json. Returns the state afterwards (stopped, or still live if nothing more could be
    done safely)."""
    run_dir = rf.existing_run_path(runs_dir, run_id)
    request_stop(runs_dir, run_id)
    state = _wait_not_live(run_dir, grace_s)
    if state not in rf.LIVE_STATES:
        return state
    status = read_status(run_dir)
    if process.safe_terminate(status):
        process.wait_exit(status["pid"], grace_s)
        state = _wait_not_live(run_dir, 1.0)
    return state


# --- resume and fork ----------------------------------------------------------------------------


class Prepared(NamedTuple):
    """What the engine needs to continue training: unpacks as (config, checkpoint, changes)."""

    config: C.Config
    checkpoint: Path
    changes: dict[str, tuple[Any, Any]]


def _changed_config(
    run_dir: Path, sets: list[str] | None, environ: dict[str, str] | None, action: str
) -> tuple[C.Config, dict[str, tuple[Any, Any]]]:
    """The run's stored config with environment and --set overrides, refusing shape changes."""
    stored = read_config(run_dir)
    if stored is None:
        raise ConfigError(f"run {run_dir.name!r} has no readable {rf.CONFIG_FILE}, so it cannot be {action}ed")
    old = C.from_dict(stored).to_dict()
    merged = C.apply_overrides(old, C.env_overrides(environ))
    cfg = C.from_dict(C.apply_overrides(merged, C.parse_set(sets)))
    changes = C.diff(old, cfg.to_dict())
    for key in C.SHAPE_KEYS:
        if key in changes:
            before, after = changes[key]
            raise ConfigError(
                f"{key}: cannot change from {before!r} to {after!r} on {action}: it changes the model's "
                f"parameter shapes, so the checkpoint's weights would not fit; start a new run "
                f"(`python -m trainer run --set {key}={after}`) instead"
            )
    return cfg, changes


def is_main_rank(environ: dict[str, str] | None = None) -> bool:
    """False in the rank > 0 processes of a torchrun launch, which never write the run directory."""
    env = os.environ if environ is None else environ
    return int(env.get("WORLD_SIZE", "1") or 1) <= 1 or int(env.get("RANK", "0") or 0) == 0


def prepare_resume(
    runs_dir: str | Path,
    run_id: str,
    sets: list[str] | None = None,
    environ: dict[str, str] | None = None,
    check_exclusive: bool = True,
) -> Prepared:
    """Config, checkpoint and config changes for resuming run_id from checkpoints/last.pt.

    check_exclusive=False skips the "is it already running" check: the other ranks of a torchrun
    resume would otherwise see rank 0's fresh heartbeat and refuse.
    """
    run_dir = rf.existing_run_path(runs_dir, run_id)
    state = run_state(run_dir)
    pid = (read_status(run_dir) or {}).get("pid")
    # A background resume's launcher marks the run as starting under the child's pid: not a rival.
    claimed_for_me = state == rf.STARTING and pid == os.getpid()
    if check_exclusive and state in rf.LIVE_STATES and not claimed_for_me:
        raise RunStateError(
            f"run {run_id!r} is {state} (pid {pid}); stop it first with `python -m trainer stop {run_id} --wait`"
        )
    cfg, changes = _changed_config(run_dir, sets, environ, "resume")
    checkpoint = run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST
    if not checkpoint.is_file():
        raise CheckpointError(
            f"run {run_id!r} has no checkpoint to resume from ({rf.CHECKPOINT_DIR}/{rf.CKPT_LAST} is missing: it "
            f"ended before its first checkpoint); start it afresh with "
            f"`python -m trainer run --config {run_dir / rf.CONFIG_FILE}`, or lower checkpoint_interval"
        )
    return Prepared(cfg, checkpoint, changes)


def available_checkpoints(run_dir: str | Path) -> list[str]:
    """What --from accepts for this run: "last", "best" and step numbers that exist."""
    ckpt_dir = Path(run_dir) / rf.CHECKPOINT_DIR
    names = []
    for name, label in ((rf.CKPT_LAST, "last"), (rf.CKPT_BEST, "best")):
        if (ckpt_dir / name).is_file():
            names.append(label)
    if ckpt_dir.is_dir():
        steps = sorted(int(m.group(1)) for p in ckpt_dir.iterdir() if (m := rf.CKPT_STEP_RE.match(p.name)))
        names += [str(s) for s in steps]
    return names


def checkpoint_path(run_dir: str | Path, from_: str | int) -> Path:
    """The checkpoint file for --from best|last|STEP, or CheckpointError listing what exists."""
    run_dir = Path(run_dir)
    label = str(from_).strip()
    if label in ("best", "last"):
        name = rf.CKPT_BEST if label == "best" else rf.CKPT_LAST
    elif label.isdigit():
        name = rf.CKPT_STEP_PATTERN.format(step=int(label))
    else:
        raise CheckpointError(f"--from {label!r}: use best, last or a step number such as 500")
    path = run_dir / rf.CHECKPOINT_DIR / name
    if not path.is_file():
        have = available_checkpoints(run_dir)
        hint = f"this run has: {', '.join(have)}" if have else "this run has no checkpoints yet"
        raise CheckpointError(f"run {run_dir.name!r} has no checkpoint {label!r} ({path.name}); {hint}")
    return path


def prepare_fork(
    runs_dir: str | Path,
    run_id: str,
    from_: str | int = "last",
    new_id: str | None = None,
    sets: list[str] | None = None,
    environ: dict[str, str] | None = None,
    check_exclusive: bool = True,
) -> Prepared:
    """Config, checkpoint and changes for a new run new_id starting from run_id's checkpoint.

    The caller records run_id as the new run's parent. Shape keys cannot change (the weights load).
    check_exclusive=False skips the "new_id is unused" check (for torchrun ranks > 0).
    """
    if new_id is None:
        raise RunIdError("a fork needs a new run id (--run-id NEW)")
    new_dir = ensure_new_run(runs_dir, new_id) if check_exclusive else rf.run_path(runs_dir, new_id)
    run_dir = rf.existing_run_path(runs_dir, run_id)
    if new_dir.resolve() == run_dir.resolve():
        raise RunExists(f"a fork needs a new run id, not {run_id!r} itself")
    cfg, changes = _changed_config(run_dir, sets, environ, "fork")
    return Prepared(cfg, checkpoint_path(run_dir, from_), changes)
