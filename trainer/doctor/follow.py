"""The online doctor of a trainer.init() run, in a process of its own that follows the run's files.

    python -m trainer.doctor.follow RUN_DIR --parent PID      # started by trainer.init, not by hand

trainer.init (trainer/api/doctor_process.py) starts it, so the doctor's work (~35 us a row) never
holds the training process's GIL. It tails metrics.jsonl, grads.jsonl and samples.jsonl as the
dashboard does (only appended bytes) every POLL_S, shows each record to an OnlineDoctor made from
config.yaml, and writes one JSON line on stdout per alert: {"alert": {...}, "step": N}, or
{"error": "traceback"} if the doctor fails (it then exits). The training process writes the alerts
into events.jsonl and prints them, so the run keeps one writer.

It ends when its stdin says "finish" or closes (the run finished: the files are read to the end
first), or when the training process is gone (its parent changed: killed -9, say). Ctrl-C in the
terminal reaches the whole process group; it is ignored here, as the training process decides.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import traceback
from pathlib import Path

from trainer.doctor.online import OnlineDoctor, in_step_order
from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import JsonlTail
from trainer.rundir.status import read_config

POLL_S = 0.25  # the files are read this often; alerts then reach the run within ~1 s more
# The doctor sees a metrics row of the same keys at most this often (by the time it was logged),
# plus every row with a non-finite value or a new set of keys, as diagnose samples a long file: a
# loop logging each millisecond would otherwise keep this process busy (all rows are written).
DOCTOR_EVERY_S = 0.02
FINISH = b"finish\n"  # what the training process writes on stdin when the run ends
FILES = {"metrics": rf.METRICS_FILE, "grads": rf.GRADS_FILE, "samples": rf.SAMPLES_FILE}


class Follower:
    """An OnlineDoctor over a run's files as they grow. new_alerts() reads what was appended."""

    def __init__(self, run_dir: Path):
        self.doctor = OnlineDoctor(read_config(run_dir) or {}, schema=False)
        self.tails = {kind: JsonlTail(run_dir / name) for kind, name in FILES.items()}
        self._seen: dict[tuple, float] = {}  # a row's keys -> time of the last such row the doctor saw

    def new_alerts(self) -> list[tuple[dict, int]]:
        """(alert, step of the record that raised it) for the records appended since the last call."""
        fresh = {kind: [r for r in tail.poll() if _int_step(r.get("step"))] for kind, tail in self.tails.items()}
        alerts = []
        for kind, record in in_step_order(fresh):
            if kind == "metrics" and not self._sees(record):
                continue
            alerts.extend((alert, record["step"]) for alert in self.doctor.observe(kind, record))
        return alerts

    def _sees(self, row: dict) -> bool:
        keys, logged = tuple(row), row.get("time")
        logged = logged if isinstance(logged, (int, float)) else 0.0
        last = self._seen.get(keys)
        if last is None or logged - last >= DOCTOR_EVERY_S or None in row.values():  # null: non-finite
            self._seen[keys] = logged
            return True
        return False


def _int_step(step) -> bool:
    return isinstance(step, int) and not isinstance(step, bool)


def follow(run_dir: Path, parent: int, stdin=None, out=None) -> int:
    """Follow run_dir until the run finishes or the parent process is gone; 0, or 1 if the doctor failed."""
    stdin = sys.stdin.buffer if stdin is None else stdin
    out = sys.stdout if out is None else out
    follower = Follower(run_dir)
    while True:
        ending = _run_ended(stdin, parent, POLL_S)
        try:
            alerts = follower.new_alerts()
        except Exception:
            _send(out, {"error": traceback.format_exc()})
            return 1
        for alert, step in alerts:
            _send(out, {"alert": alert, "step": step})
        if ending:
            return 0


def _run_ended(stdin, parent: int, wait_s: float) -> bool:
    """Wait up to wait_s; True once stdin says finish or closed, or the parent process is gone."""
    if os.getppid() != parent:  # we were re-parented: the training process died
        return True
    readable, _, _ = select.select([stdin], [], [], wait_s)
    if readable:
        said = os.read(stdin.fileno(), 64)
        return said == b"" or FINISH in said
    return os.getppid() != parent


def _send(out, message: dict) -> None:
    out.write(json.dumps(message) + "\n")
    out.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--parent", type=int, required=True, help="the training process: follow until it is gone")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        return follow(args.run_dir, args.parent)
    except BrokenPipeError:  # the training process is gone and nobody reads our alerts
        os._exit(0)  # not sys.exit: flushing stdout at exit would fail again


if __name__ == "__main__":
    sys.exit(main())
