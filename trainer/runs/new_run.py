"""A new run: where runs live, a fresh id, its config, a free directory, and which process writes it.

    from trainer.runs import new_run
    cfg = new_run.resolve_new("configs/regression.yaml", ["lr=3e-3"])
    run_dir = new_run.ensure_new_run(new_run.default_runs_dir(), new_run.new_run_id(cfg.task))

The command line and the dashboard both start new runs through these functions.
"""

from __future__ import annotations

import os
from pathlib import Path

from trainer import PROJECT_ROOT
from trainer import config as C
from trainer.errors import RunExists
from trainer.rundir import run_format as rf

# Where runs live and fresh ids are decided one layer down, shared with trainer.api; re-exported.
from trainer.rundir.location import RUNS_DIR_ENV, _issued_ids, default_runs_dir, fresh_run_id  # noqa: F401

ROOT = PROJECT_ROOT
DEFAULT_CONFIG = ROOT / "configs" / "shakespeare_char.yaml"

# Run ids start with a readable name for the task's default data.
_TASK_PREFIX = {"char_lm": "shakespeare"}


def new_run_id(task: str, runs_dir: str | Path | None = None, now: float | None = None) -> str:
    """A fresh id like shakespeare-20261123-142501; -2, -3, ... is added if that one is taken."""
    prefix = _TASK_PREFIX.get(task) or rf.id_part(task).replace("_", "-") or "run"
    return fresh_run_id(prefix, runs_dir, now)


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
    if path.exists() and not rf.holds_only_launch_files(path):
        raise RunExists(f"run {run_id!r} already exists in {Path(runs_dir)}; pick another --run-id")
    return path


def is_main_rank(environ: dict[str, str] | None = None) -> bool:
    """False in the rank > 0 processes of a torchrun launch, which never write the run directory."""
    env = os.environ if environ is None else environ
    return int(env.get("WORLD_SIZE", "1") or 1) <= 1 or int(env.get("RANK", "0") or 0) == 0
