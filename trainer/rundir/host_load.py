"""CPU use on this host by work that is not one of our runs, over the last few seconds.

    load = OtherLoad(cores, [me, *neighbours])  # the first sample, now
    busy = load.measure([me, *neighbours])      # cores busy with other work since the previous call

The host's busy CPU time (psutil.cpu_times, summed over its CPUs) minus the CPU time of our own
runs' processes, over the wall time between two calls: so a run of ours never counts as load on
another (they are the ones sharing the cores), while the dashboard, Chromium, another user's
compile job or a busy loop do. One call reads /proc/stat and one /proc/PID/stat per run of ours:
tens of microseconds (benchmarks/sharing.py --parts check measures it).
"""

from __future__ import annotations

import os
import time

import psutil

MIN_WINDOW_S = 0.5  # CPU time ticks in 10 ms steps: a shorter window is mostly rounding

# Linux counts guest time inside user and nice already; idle and iowait are time no task wanted.
_NOT_BUSY = ("idle", "iowait", "guest", "guest_nice")


def host_busy_seconds() -> float:
    """CPU seconds all of this host's CPUs have spent busy since boot."""
    times = psutil.cpu_times()
    return sum(getattr(times, f) for f in times._fields if f not in _NOT_BUSY)


def other_busy_cores(host_busy_s: float, ours_s: float, wall_s: float, cores: int) -> float:
    """Cores busy with other work: the host's busy CPU seconds in a window less our runs' CPU
    seconds, over the window's wall seconds; 0 to `cores` (the two counters tick separately, so
    their difference can step a little past either end)."""
    if wall_s <= 0:
        return 0.0
    return min(float(cores), max(0.0, (host_busy_s - ours_s) / wall_s))


def waiting_seconds(pid: int | None = None) -> float | None:
    """Seconds the threads of a process (default: this one) have spent ready to run but waiting for
    a core, summed over its live threads: the kernel's run-queue delay (/proc/PID/task/*/schedstat,
    its second field, in ns). None where the kernel does not keep it (not Linux, no schedstats).
    A thread that has ended takes its share with it: read it as a rate between two calls, not a total."""
    tasks = f"/proc/{pid or 'self'}/task"
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    total, found = 0, False
    for name in names:
        try:  # os.open/os.read: half the cost of open() and its buffered file object (~8 us a thread)
            fd = os.open(f"{tasks}/{name}/schedstat", os.O_RDONLY)
            try:
                total += int(os.read(fd, 128).split()[1])
            finally:
                os.close(fd)
            found = True
        except (OSError, IndexError, ValueError):
            continue  # the thread ended between the listing and the read
    return total / 1e9 if found else None


def cpu_seconds(proc: psutil.Process) -> float | None:
    """User and system CPU seconds of a process (its threads included), or None once it is gone."""
    try:
        times = proc.cpu_times()
    except psutil.Error:
        return None
    return times.user + times.system


class OtherLoad:
    """Cores busy with work other than ours, measured between successive calls of measure()."""

    def __init__(self, cores: int, ours: list[psutil.Process]):
        """cores: the host's physical cores; ours: the processes of our live runs on this host."""
        self.cores = cores
        self._time, self._host, self._ours = time.monotonic(), host_busy_seconds(), _cpu_by_process(ours)

    def measure(self, ours: list[psutil.Process]) -> float | None:
        """Cores busy with other work since the previous call (or since this object was made); None
        when that was under MIN_WINDOW_S ago (the window then runs on to the next call).
        `ours`: the processes of our live runs on this host, this one included."""
        now = time.monotonic()
        if now - self._time < MIN_WINDOW_S:
            return None
        host, used = host_busy_seconds(), _cpu_by_process(ours)
        # A run first seen now started within the window, or wrote its status.json late: all its
        # CPU time is counted as ours (other work is clamped at 0 if that was too much).
        ours_s = sum(seconds - self._ours.get(key, 0.0) for key, seconds in used.items())
        busy = other_busy_cores(host - self._host, ours_s, now - self._time, self.cores)
        self._time, self._host, self._ours = now, host, used
        return busy


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """Every process below proc: its children, theirs, and so on. Read from the kernel's lists of
    each thread's children (/proc/PID/task/TID/children: a few small reads, ~0.04 ms), where it has
    them (Linux with CONFIG_PROC_CHILDREN, as Debian's and Ubuntu's kernels); else psutil's listing,
    which reads /proc/PID/stat of every process on the host to find their parents (1.1 ms for 69
    processes here, more on a busy host). A process that ends while it is read is left out."""
    pids = _child_pids(proc.pid)
    if pids is None:
        try:
            return proc.children(recursive=True)
        except psutil.Error:
            return []
    found, seen = [], {proc.pid}
    while pids:
        pid = pids.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
        pids.extend(_child_pids(pid) or [])
    return found


def _child_pids(pid: int) -> list[int] | None:
    """The pids the kernel lists as children of pid's threads; None where it keeps no such list
    (or pid is gone)."""
    tasks = f"/proc/{pid}/task"
    try:
        names = os.listdir(tasks)
    except OSError:
        return None
    pids, listed = [], False
    for name in names:
        try:  # os.open/os.read, as waiting_seconds: no buffered file object per thread
            fd = os.open(f"{tasks}/{name}/children", os.O_RDONLY)
        except OSError:
            continue  # no such list in this kernel, or the thread ended
        listed = True
        try:
            pids.extend(int(p) for p in os.read(fd, 1 << 16).split())
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)
    return pids if listed else None


def sibling_processes(proc: psutil.Process) -> list[psutil.Process]:
    """The other children of proc's parent: under torchrun, the other ranks of the same run on this
    host (only rank 0 writes status.json, so they are found this way). [] if the parent is gone."""
    try:
        parent = proc.parent()
        return [p for p in parent.children() if p.pid != proc.pid] if parent is not None else []
    except psutil.Error:
        return []


def _cpu_by_process(procs: list[psutil.Process]) -> dict[tuple[int, float], float]:
    """(pid, create time) -> CPU seconds, of each process still alive (create time tells a reused pid)."""
    found = {}
    for proc in procs:
        used = cpu_seconds(proc)
        if used is not None:
            found[(proc.pid, proc.create_time())] = used  # create_time is cached by psutil
    return found
