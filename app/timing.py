"""Server time of the dashboard's live refreshes, for benchmarks/dashboard_latency.py.

With DASHBOARD_TIMING_LOG=path in the server's environment, every timed block appends a line
"<label> <wall seconds> <cpu seconds>" to that file; without it nothing is written. Wall time is
what a user waits for; the thread's CPU time is the work itself, which on a busy machine (other
processes, or other sessions holding the GIL) can be much less than the wall time.

    with timing.logged("live"):
        ...one refresh...
"""

from __future__ import annotations

import contextlib
import os
import time

TIMING_LOG_ENV = "DASHBOARD_TIMING_LOG"


@contextlib.contextmanager
def logged(label: str):
    started, cpu_started = time.perf_counter(), time.thread_time()
    try:
        yield
    finally:
        path = os.environ.get(TIMING_LOG_ENV)
        if path:
            wall, cpu = time.perf_counter() - started, time.thread_time() - cpu_started
            with open(path, "a", encoding="utf-8") as f:
                f.write(f"{label} {wall:.6f} {cpu:.6f}\n")


def read_log(path: str | os.PathLike, cpu: bool = False) -> dict[str, list[float]]:
    """{label: [wall seconds, ...]} from a timing log ({label: [cpu seconds, ...]} with cpu)."""
    out: dict[str, list[float]] = {}
    try:
        text = open(path, encoding="utf-8").read()
    except OSError:
        return out
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 1:  # a bare number: the Live page's wall time, as older dashboards wrote
            fields = ["live", fields[0], "nan"]
        if len(fields) == 3:
            out.setdefault(fields[0], []).append(float(fields[2] if cpu else fields[1]))
    return out
