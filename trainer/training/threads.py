"""This process's share of the host's cores: torch's intra-op threads, set when training starts and
looked at again every RECHECK_S while it trains (trainer.rundir.sharing says why and how much).

    share = ThreadShare(cfg.threads, runs_dir, run_id)   # sets torch's threads
    if share.recheck():                                   # a run started or ended beside us
        writer.set_status(threads=share.threads)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from trainer.rundir import sharing

RECHECK_S = 5.0  # reading every status.json of the runs directory costs ~1 ms for ten runs


class ThreadShare:
    def __init__(self, setting: str, runs_dir: str | Path | None, run_id: str | None):
        self.setting, self.runs_dir, self.run_id = str(setting), runs_dir, run_id
        # torchrun starts LOCAL_WORLD_SIZE processes of this run on the host: they split its share.
        self.ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        self.threads = sharing.thread_budget(self.setting, runs_dir, run_id, self.ranks)
        torch.set_num_threads(self.threads)
        self._checked = time.monotonic()

    def recheck(self) -> bool:
        """Take the current share (auto only, at most every RECHECK_S); True if it changed."""
        if self.setting != sharing.AUTO or time.monotonic() - self._checked < RECHECK_S:
            return False
        self._checked = time.monotonic()
        threads = sharing.thread_budget(self.setting, self.runs_dir, self.run_id, self.ranks)
        if threads == self.threads:
            return False
        torch.set_num_threads(threads)
        self.threads = threads
        return True
