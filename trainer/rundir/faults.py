"""Fault injection for the fault suite: a named point on the write path kills the process or fails
with a full disk, when the TRAINER_FAULT environment variable asks for it (tests and
benchmarks/kill_soak.py set it; nothing else does).

    TRAINER_FAULT=checkpoint:kill:3   # SIGKILL at the 3rd checkpoint write, after the bytes, before the rename
    TRAINER_FAULT=checkpointed:kill:1 # SIGKILL just after the 1st checkpoint file is complete (renamed)
    TRAINER_FAULT=flush:kill:5        # SIGKILL in the 5th metrics flush, half its bytes written (a torn line)
    TRAINER_FAULT=flush:enospc:2      # the 2nd metrics flush fails with "No space left on device"

Points (where the write path calls point()): "checkpoint" and "checkpointed" (in and after
checkpoint.save_atomic) and "flush" (the writer's metrics.jsonl append). Unset, point() costs one truth test.
"""

from __future__ import annotations

import errno
import os
import signal
from collections import Counter
from collections.abc import Callable

ENV = "TRAINER_FAULT"
POINTS = ("checkpoint", "checkpointed", "flush")
ACTIONS = ("kill", "enospc")


def parse(spec: str) -> dict[str, tuple[str, int]]:
    """'point:action:n[,point:action:n]' as {point: (action, n)}; ValueError naming what is wrong."""
    plan = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        fields = part.split(":")
        if len(fields) != 3 or fields[0] not in POINTS or fields[1] not in ACTIONS or not fields[2].isdigit():
            raise ValueError(
                f"{ENV}={spec!r}: each fault is POINT:ACTION:N with POINT one of {', '.join(POINTS)}, "
                f"ACTION one of {', '.join(ACTIONS)} and N the hit that fires (1 = the first)"
            )
        plan[fields[0]] = (fields[1], int(fields[2]))
    return plan


_plan = parse(os.environ.get(ENV, ""))
_hits: Counter = Counter()


def point(name: str, tear: Callable[[], None] | None = None) -> None:
    """Fire the fault planned for this point at its n-th hit, if any. tear() runs first: it leaves
    the half-written state a real crash or a full disk would."""
    if not _plan or name not in _plan:
        return
    _hits[name] += 1
    action, n = _plan[name]
    if _hits[name] != n:
        return
    if tear is not None:
        tear()
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
