"""Runs: where they live, what state they are in, and how to stop, resume or fork one.

The CLI (`python -m trainer list|stop|resume|fork`) and the dashboard both call these functions;
neither holds any logic of its own. The run directory is the source of truth (run_format.py).

    from trainer import runs
    for info in runs.list_runs(runs.default_runs_dir()):
        print(info.run_id, info.state, info.step)

One module per concept; this package re-exports their public names as the documented
`trainer.runs.*` API (docs/run-format.md):

    new_run.py   where runs live, a fresh run id, a new run's config, a free directory, the writing rank
    state.py     status.json and config.yaml as written, and "crashed" derived
    listing.py   RunInfo rows for `list` and the dashboard's run table, alert counts
    control.py   stopping a live run: the control/stop file, then SIGTERM to the right process only
    resume.py    resume and fork: which checkpoint and config to continue from
    trials.py    remedy trials: a short run per remedy of an alert plus a control, and their verdicts
"""

from trainer.rundir.listing import RunInfo, alert_counts, is_run_dir, last_log_line, list_runs, newest_first, run_info
from trainer.rundir.status import read_config, read_status, run_state
from trainer.runs.control import DEFAULT_STOP_GRACE_S, STOP_GRACE_ENV, enforce_stop, request_stop, stop, stop_grace_s
from trainer.runs.new_run import (
    DEFAULT_CONFIG,
    ROOT,
    RUNS_DIR_ENV,
    default_runs_dir,
    ensure_new_run,
    is_main_rank,
    new_run_id,
    resolve_new,
)
from trainer.runs.resume import (
    Prepared,
    available_checkpoints,
    checkpoint_path,
    prepare_fork,
    prepare_resume,
    restart_refusal,
)

__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_STOP_GRACE_S",
    "ROOT",
    "RUNS_DIR_ENV",
    "STOP_GRACE_ENV",
    "Prepared",
    "RunInfo",
    "alert_counts",
    "available_checkpoints",
    "checkpoint_path",
    "default_runs_dir",
    "enforce_stop",
    "ensure_new_run",
    "is_main_rank",
    "is_run_dir",
    "last_log_line",
    "list_runs",
    "new_run_id",
    "newest_first",
    "prepare_fork",
    "prepare_resume",
    "read_config",
    "read_status",
    "request_stop",
    "resolve_new",
    "restart_refusal",
    "run_info",
    "run_state",
    "stop",
    "stop_grace_s",
]
