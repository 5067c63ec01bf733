"""How our runs share one host: a thread budget per run, and which GPU a new run takes.

    budget = thread_budget("auto", runs_dir, run_id)      # Budget(threads, reason), before any measuring
    budget = auto_budget(cores, runs, ranks, other_busy, current=budget.threads)   # as it trains
    gpu = pick_gpu([free bytes per GPU], gpus_in_use(runs_dir))

Torch's default is one intra-op thread per core in every process, so two runs on two cores run
four threads that spin at their barriers waiting for each other: measured on the project's
2-core machine, two regression runs at once made 3.9 and 3.7 steps/s, against 13.2 and 13.6 with
one thread each (15.3 alone). The same holds for any other work on the host: under a heavy load a
preset ran at 0.18 steps/s on two threads against about 2 on one. So a run takes the cores free of
other work (physical cores less the CPU that processes other than our runs used over the last few
seconds, trainer.rundir.host_load), shared equally among our live runs on this host, at least one
thread; a running trainer looks again every few seconds (trainer.training.threads).

Every trainer of ours records in status.json the threads it uses (`threads`), why (`threads_reason`)
and its device (`device`); that is what a new run reads to choose. Nothing here imports torch.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import NamedTuple

import psutil

from trainer.rundir import run_format as rf
from trainer.rundir.status import read_status, state_from_status

AUTO = "auto"

# Other work under a quarter of a core (a dashboard's refresh, an editor) takes no thread from a run.
IGNORED_LOAD = 0.25
# Hysteresis: a run gives a thread back only once other work holds more than half a core of it, and
# takes one only once less than IGNORED_LOAD of it is busy, so a load near the line does not make
# it change threads every few seconds. Giving back is the side to err on: two threads on a core and
# a bit made a preset 10x slower, one thread on two free cores makes it 1.45x slower.
DROP_LOAD = 0.5


class Budget(NamedTuple):
    threads: int
    reason: str  # the numbers it came from, as the System page shows them


@functools.cache  # psutil reads /sys for it (0.2 ms), and a trainer asks every few seconds
def physical_cores() -> int:
    """Cores that can run a thread each at full speed (hyper-threads share a core's arithmetic)."""
    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def runs_on_host(runs_dir: str | Path, host: str | None = None, exclude: str | None = None):
    """(run directory, status.json) of each run under runs_dir written on `host` (this one by
    default; a status without a host counts as here), run `exclude` left out."""
    host = host or socket.gethostname()
    try:
        entries = sorted(Path(runs_dir).iterdir())
    except OSError:
        return
    for run_dir in entries:
        if run_dir.name == exclude or not rf.RUN_ID_RE.match(run_dir.name):
            continue
        status = read_status(run_dir)
        if status is not None and status.get("host", host) == host:
            yield run_dir, status


def live_neighbours(runs_dir: str | Path, exclude: str | None = None) -> list[dict]:
    """status.json of each of our runs that is live on this host (run `exclude` left out)."""
    now = time.time()
    return [
        {**status, "run_id": run_dir.name}
        for run_dir, status in runs_on_host(runs_dir, exclude=exclude)
        if state_from_status(run_dir, status, now) in rf.LIVE_STATES
    ]


def threads_for(cores: int, other_busy: float, runs: int, ranks: int = 1, current: int | None = None) -> int:
    """Intra-op threads for one process when `runs` runs of `ranks` processes each share the
    `cores` that `other_busy` cores of other work leave free: 1 to `cores`; with `current` (the
    threads it runs now), changed only past the hysteresis lines above."""
    processes = max(1, runs * max(1, ranks))

    def share(ignored_load: float) -> int:
        free = cores - max(0.0, other_busy - ignored_load)
        return min(cores, max(1, int(free // processes)))

    rise_to, keep_down_to = share(IGNORED_LOAD), share(DROP_LOAD)
    if current is None or current < rise_to:
        return rise_to
    return min(current, keep_down_to)


def budget_reason(cores: int, other_busy: float | None, runs: int, ranks: int = 1) -> str:
    """'2 physical cores, 0.9 busy with other work, 2 runs of ours': what an auto budget came from."""
    other = "other work not measured yet" if other_busy is None else f"{other_busy:.1f} busy with other work"
    ours = f"{runs} run{'s' if runs != 1 else ''} of ours"
    if ranks > 1:
        ours += f" of {ranks} processes each"
    return f"{cores} physical core{'s' if cores != 1 else ''}, {other}, {ours}"


def auto_budget(
    cores: int, runs: int, ranks: int = 1, other_busy: float | None = None, current: int | None = None
) -> Budget:
    """threads: auto for one process of `runs` runs of ours here; other_busy None (not measured
    yet) counts no other work."""
    threads = threads_for(cores, other_busy or 0.0, runs, ranks, current)
    return Budget(threads, budget_reason(cores, other_busy, runs, ranks))


def thread_budget(setting: str | int, runs_dir: str | Path | None, run_id: str | None, ranks: int = 1) -> Budget:
    """The threads a run starts with: N when the config says N, else its share of this host's
    physical cores among our live runs here (this one counted once, whether or not it is live yet).
    Other work is not measured here (that takes a few seconds): the trainer measures it as it runs."""
    if str(setting) != AUTO:
        return Budget(int(setting), f"threads: {setting} in the config")
    others = live_neighbours(runs_dir, exclude=run_id) if runs_dir is not None else []
    return auto_budget(physical_cores(), 1 + len(others), ranks)


def gpus_in_use(runs_dir: str | Path, exclude: str | None = None) -> dict[int, int]:
    """GPU index -> how many of our live runs on this host are on it."""
    counts: dict[int, int] = {}
    for status in live_neighbours(runs_dir, exclude):
        device = str(status.get("device") or "")
        if device == "cuda" or device.startswith("cuda:"):
            index = int(device.partition(":")[2] or 0)
            counts[index] = counts.get(index, 0) + 1
    return counts


def pick_gpu(free_bytes: list[int], busy: dict[int, int]) -> int | None:
    """The GPU for a new run: one that none of our runs is on, the most free memory first; when
    every GPU has one, the one with the fewest, then the most free memory. None without GPUs."""
    if not free_bytes:
        return None
    return min(range(len(free_bytes)), key=lambda i: (busy.get(i, 0), -free_bytes[i], i))


def gpu_free_memory() -> list[int]:
    """Free bytes of each GPU this process may use (CUDA_VISIBLE_DEVICES order), from nvidia-smi:
    asking torch would create a CUDA context on every GPU of the asking process. [] without GPUs."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        free = {int(i): int(mb) * 2**20 for i, mb in (line.split(",") for line in out.strip().splitlines())}
    except (OSError, ValueError, subprocess.SubprocessError):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return [free[i] for i in sorted(free)]
    try:
        return [free[int(i)] for i in visible.split(",") if i.strip()]
    except (KeyError, ValueError):  # UUIDs or MIG names: we cannot map them, so place nothing
        return []


def place_on_gpu(device_setting: str, runs_dir: str | Path) -> str | None:
    """The device for a new run with device auto on a host with several GPUs (cuda:K, where pick_gpu
    says), or None to leave the config as it is (a named device, one GPU or none)."""
    if device_setting != AUTO:
        return None
    free = gpu_free_memory()
    if len(free) < 2:
        return None
    return f"cuda:{pick_gpu(free, gpus_in_use(runs_dir))}"
