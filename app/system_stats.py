"""Resource use of trainer processes and of the machine, from psutil.

A trainer is found through its run's status.json (pid and create time must match, so a reused
pid is never reported as the trainer). psutil.Process objects are kept between refreshes
because cpu_percent measures the time since the previous call on the same object.
"""

from __future__ import annotations

import os
import threading

import psutil

from trainer.rundir import owner
from trainer.rundir import run_format as rf

_procs: dict[tuple[int, float], psutil.Process] = {}
_lock = threading.Lock()


def _tracked(status: dict) -> psutil.Process | None:
    proc = owner.same_process(status)
    if proc is None:
        return None
    key = (proc.pid, float(status.get("pid_create_time") or 0.0))
    with _lock:
        return _procs.setdefault(key, proc)


def process_row(run_id: str, status: dict | None) -> dict | None:
    """CPU %, resident memory, threads and children of the run's live trainer, its share of the
    cores (torch threads and the numbers they came from, as status.json records them) and its
    device; or None."""
    proc = _tracked(status or {})
    if proc is None:
        return None
    try:
        with proc.oneshot():
            mem = proc.memory_info()
            row = {
                "run": run_id,
                "pid": proc.pid,
                "cpu_percent": proc.cpu_percent(interval=None),
                "rss_mb": mem.rss / 2**20,
                "device": (status or {}).get("device", ""),
                "torch threads": (status or {}).get(rf.STATUS_THREADS),
                "threads from": (status or {}).get(rf.STATUS_THREADS_REASON, ""),
                "os threads": proc.num_threads(),
                "children": len(proc.children(recursive=True)),
                "status": proc.status(),
            }
    except psutil.Error:
        return None
    return row


def machine_totals(path: str | os.PathLike = ".") -> dict:
    """CPU, memory, load and disk of the machine (disk of the filesystem holding path)."""
    vm = psutil.virtual_memory()
    totals = {
        "cpu_count": psutil.cpu_count(),
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_used_gb": (vm.total - vm.available) / 2**30,
        "memory_total_gb": vm.total / 2**30,
        "memory_percent": vm.percent,
    }
    if hasattr(os, "getloadavg"):
        totals["load_1m"] = os.getloadavg()[0]
    try:
        disk = psutil.disk_usage(str(path))
        totals["disk_free_gb"] = disk.free / 2**30
    except OSError:
        pass
    return totals


def dashboard_row() -> dict:
    """The dashboard's own process, for comparison."""
    me = psutil.Process()
    return {"pid": me.pid, "rss_mb": me.memory_info().rss / 2**20, "threads": me.num_threads()}
