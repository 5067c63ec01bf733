"""Where runs live and what a new one is called: the runs directory setting and fresh run ids.

    from trainer.rundir.location import default_runs_dir, fresh_run_id
    run_dir = default_runs_dir() / fresh_run_id("shakespeare", default_runs_dir())

Here, below everything that starts a run, so our trainer (trainer.runs.new_run) and the logging
API for your own script (trainer.api) read the one setting and hand out ids from the one set.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

RUNS_DIR_ENV = "TRAINER_RUNS_DIR"


def default_runs_dir() -> Path:
    """The runs directory: $TRAINER_RUNS_DIR, else ./runs. The only place this is decided."""
    return Path(os.environ.get(RUNS_DIR_ENV) or "runs").resolve()


def fresh_run_id(prefix: str, runs_dir: str | Path | None = None, now: float | None = None) -> str:
    """A fresh id like shakespeare-20261123-142501; -2, -3, ... is added if that one is taken."""
    base = f"{prefix}-{time.strftime('%Y%m%d-%H%M%S', time.localtime(now))}"
    candidate, n = base, 1
    # Ids handed out earlier count as taken too: two clicks in one second must not share a run.
    while candidate in _issued_ids or (runs_dir is not None and (Path(runs_dir) / candidate).exists()):
        n += 1
        candidate = f"{base}-{n}"
    _issued_ids.add(candidate)
    return candidate


_issued_ids: set[str] = set()
