"""This process's share of the host's cores: torch's intra-op threads, set when training starts and
looked at again while it trains (trainer.rundir.sharing says why and how much).

    share = ThreadShare(cfg.threads, runs_dir, run_id)   # sets torch's threads
    if share.recheck():                                   # other work or a run of ours came or went
        writer.set_status(**share.status_fields(), write=False)   # the heartbeat writes it

With threads: auto the first budget is the equal share among our live runs; from the first check
(FIRST_CHECK_S after start) on, the cores busy with other work over the last RECHECK_S count too.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil
import torch

from trainer.rundir import host_load, owner, sharing
from trainer.rundir import run_format as rf

RECHECK_S = 5.0  # one check: every status.json of the runs directory (~1 ms for ten runs) and /proc
FIRST_CHECK_S = 1.0  # a run started beside a busy job leaves it soon; a 1 s window is 100 ticks a CPU


class ThreadShare:
    def __init__(self, setting: str, runs_dir: str | Path | None, run_id: str | None):
        self.setting, self.runs_dir, self.run_id = str(setting), runs_dir, run_id
        # torchrun starts LOCAL_WORLD_SIZE processes of this run on the host: they split its share.
        self.ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        self.budget = sharing.thread_budget(self.setting, runs_dir, run_id, self.ranks)
        self.load: host_load.OtherLoad | None = None
        self._me = psutil.Process()
        # torchrun's other ranks of this run share its share: their CPU is ours, not other work.
        self._ranks = host_load.sibling_processes(self._me) if self.ranks > 1 else []
        self.other_busy: float | None = None  # cores busy with other work at the last measure
        if self.setting == sharing.AUTO:
            self.load = host_load.OtherLoad(sharing.physical_cores(), self._our_processes(self._neighbours()))
        torch.set_num_threads(self.threads)
        self._checked = time.monotonic() - (RECHECK_S - FIRST_CHECK_S)

    @property
    def threads(self) -> int:
        return self.budget.threads

    @property
    def reason(self) -> str:
        return self.budget.reason

    def status_fields(self) -> dict:
        """What status.json records of this share."""
        return {rf.STATUS_THREADS: self.threads, rf.STATUS_THREADS_REASON: self.reason}

    def recheck(self) -> bool:
        """Take the current budget (auto only, at most every RECHECK_S); True if it changed, in
        threads or in the numbers it came from (worth a status.json write)."""
        if self.load is None or time.monotonic() - self._checked < RECHECK_S:
            return False
        self._checked = time.monotonic()
        neighbours = self._neighbours()
        measured = self.load.measure(self._our_processes(neighbours))
        self.other_busy = self.other_busy if measured is None else measured
        cores = sharing.physical_cores()
        budget = sharing.auto_budget(cores, 1 + len(neighbours), self.ranks, self.other_busy, self.threads)
        if budget == self.budget:
            return False
        if budget.threads != self.threads:
            torch.set_num_threads(budget.threads)
        self.budget = budget
        return True

    def _neighbours(self) -> list[dict]:
        return sharing.live_neighbours(self.runs_dir, exclude=self.run_id) if self.runs_dir is not None else []

    def _our_processes(self, neighbours: list[dict]) -> list[psutil.Process]:
        """This process, the processes below it (trainer.init's doctor process, data loader workers,
        listed at every check: workers restarted each epoch are ours at once), its run's other ranks
        and the processes of our live runs beside it: their CPU is sharing, not other work."""
        found = (owner.same_process(status) for status in neighbours)
        below = host_load.descendants(self._me)
        return [self._me, *below, *self._ranks, *(proc for proc in found if proc is not None)]
