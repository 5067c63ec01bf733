"""Resume and fork: the config and checkpoint to continue training from, checked before anything runs.

A resume continues the same run from checkpoints/last.pt; a fork starts a new run from any
checkpoint of another (its parent). Both take environment and --set changes, except to the keys
that change parameter shapes, since the checkpoint's weights must still load.

    from trainer.runs.resume import prepare_fork, prepare_resume
    cfg, checkpoint, changes = prepare_resume("runs", "fc1", ["max_steps=4000"])
    cfg, checkpoint, changes = prepare_fork("runs", "fc1", "best", "fc1-lr", ["lr=3e-3"])
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

from trainer import config as C
from trainer.errors import CheckpointError, ConfigError, NoCheckpoint, RunExists, RunIdError, RunStateError
from trainer.rundir import run_format as rf
from trainer.rundir.status import read_config, read_status, run_state
from trainer.runs.new_run import ensure_new_run


class Prepared(NamedTuple):
    """What the engine needs to continue training: (config, checkpoint, changes, skipped)."""

    config: C.Config
    checkpoint: Path
    changes: dict[str, tuple[Any, Any]]
    skipped: tuple[tuple[str, str], ...] = ()  # (file name, what is wrong with it) passed over for a resume


def checkpoint_damage(path: Path) -> str | None:
    """What is wrong with a checkpoint file, or None if it is whole. torch.save writes a zip archive,
    so a file cut short (a kill during a copy, a full disk) or with changed bytes fails the archive's
    own checks (its central directory, each member's CRC); no torch needed, nothing unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile) as e:
        return f"not a whole checkpoint ({type(e).__name__}: {e})"
    return f"member {bad} fails its checksum" if bad else None


def _resume_candidates(run_dir: Path) -> list[Path]:
    """last.pt, then the numbered checkpoints newest first, then best.pt."""
    ckpt_dir = run_dir / rf.CHECKPOINT_DIR
    numbered = sorted(
        (p for p in ckpt_dir.iterdir() if rf.CKPT_STEP_RE.match(p.name)) if ckpt_dir.is_dir() else [],
        key=lambda p: int(rf.CKPT_STEP_RE.match(p.name).group(1)),
        reverse=True,
    )
    return [p for p in (ckpt_dir / rf.CKPT_LAST, *numbered, ckpt_dir / rf.CKPT_BEST) if p.is_file()]


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


def restart_refusal(status: dict | None, action: str) -> str | None:
    """Why our trainer cannot `action` (resume, fork) this run, as the words after "run ID" (None: it
    can). A script's run (trainer.init) or an imported log holds no checkpoint or config of ours, so
    saying so beats failing on its config's first key that is not ours."""
    status = status or {}
    if status.get(rf.STATUS_WRITER) == rf.WRITER_API:
        return (
            f"was written by its own script through trainer.init, so only that script can {action} it: "
            "run the script again (its checkpoints are its own)"
        )
    if status.get(rf.STATUS_IMPORTED_FROM):
        return (
            f"was imported from {status[rf.STATUS_IMPORTED_FROM]}: it has no checkpoint of ours to {action}; "
            "train it again with its own program, or start a run of ours with `python -m trainer run`"
        )
    return None


def refuse_if_not_ours(run_dir: Path, run_id: str, action: str) -> None:
    why = restart_refusal(read_status(run_dir), action)
    if why:
        raise RunStateError(f"run {run_id!r} {why}")


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
    refuse_if_not_ours(run_dir, run_id, "resume")
    state = run_state(run_dir)
    pid = (read_status(run_dir) or {}).get("pid")
    # A background resume's launcher marks the run as starting under the child's pid: not a rival.
    claimed_for_me = state == rf.STARTING and pid == os.getpid()
    if check_exclusive and state in rf.LIVE_STATES and not claimed_for_me:
        raise RunStateError(
            f"run {run_id!r} is {state} (pid {pid}); stop it first with `python -m trainer stop {run_id} --wait`"
        )
    cfg, changes = _changed_config(run_dir, sets, environ, "resume")
    status = read_status(run_dir) or {}
    if state == rf.FINISHED and isinstance(status.get("step"), int) and status["step"] >= cfg.max_steps:
        raise RunStateError(
            f"run {run_id!r} finished at step {status['step']} of max_steps {cfg.max_steps}; to train it longer, "
            f"resume with more steps: `python -m trainer resume {run_id} --set max_steps={2 * cfg.max_steps}`"
        )
    candidates = _resume_candidates(run_dir)
    if not candidates:
        raise NoCheckpoint(
            f"run {run_id!r} has no checkpoint to resume from ({rf.CHECKPOINT_DIR}/{rf.CKPT_LAST} is missing: it "
            f"ended before its first checkpoint); start it afresh with "
            f"`python -m trainer run --config {run_dir / rf.CONFIG_FILE}`, or lower checkpoint_interval"
        )
    skipped = []
    for checkpoint in candidates:  # the newest whole one: a damaged last.pt must not cost the run
        damage = checkpoint_damage(checkpoint)
        if damage is None:
            return Prepared(cfg, checkpoint, changes, tuple(skipped))
        skipped.append((checkpoint.name, damage))
    listed = "; ".join(f"{name}: {why}" for name, why in skipped)
    raise CheckpointError(
        f"run {run_id!r} has no whole checkpoint to resume from ({listed}); fork another run or start afresh "
        f"with `python -m trainer run --config {run_dir / rf.CONFIG_FILE}`"
    )


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
    refuse_if_not_ours(run_dir, run_id, "fork")
    cfg, changes = _changed_config(run_dir, sets, environ, "fork")
    return Prepared(cfg, checkpoint_path(run_dir, from_), changes)
