"""The training side of the online doctor's process (trainer/doctor/follow.py): start it, collect
its alerts, and end it with the run.

    doctor = DoctorProcess(run_dir, on_alert, on_failure)
    doctor.poll()      # from the run's background thread: on_alert(alert, step) for each new alert
    doctor.close()     # at finish, after the last rows are written: its last alerts, then it exits

Why a process: the doctor costs ~35 us a row in Python, and on a thread of the training process
it would hold the GIL the training loop needs (a sub-millisecond step then pays several percent).
In its own process it reads the files the run writes anyway, and the training process only reads a
pipe once a second. A child that cannot start, fails or dies never stops training: on_failure is
called once with what to tell the user, and the run keeps logging without a doctor.
"""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import trainer

FINISH = b"finish\n"  # trainer.doctor.follow.FINISH (not imported: the API does not load the doctor)
CLOSE_TIMEOUT_S = 30.0  # at finish, the doctor gets this long to read the last rows (it starts in ~0.5 s)


class DoctorProcess:
    """One run's doctor process. poll() and close() are called from one thread at a time."""

    def __init__(
        self,
        run_dir: Path,
        on_alert: Callable[[dict, int | None], None],
        on_failure: Callable[[str], None],
    ):
        self.on_alert, self.on_failure = on_alert, on_failure
        self.failed = False
        self._out = b""
        self._err = b""
        env = dict(os.environ)
        # the same trainer package as ours, wherever the script runs from; a doctor needs no threads
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(trainer.PROJECT_ROOT), env.get("PYTHONPATH")) if p)
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        argv = [sys.executable, "-m", "trainer.doctor.follow", str(run_dir), "--parent", str(os.getpid())]
        try:
            self.process: subprocess.Popen | None = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
        except OSError as e:
            self.process = None
            self._fail(f"could not start ({e})")
            return
        for stream in (self.process.stdout, self.process.stderr):
            os.set_blocking(stream.fileno(), False)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def poll(self) -> None:
        """Hand on the alerts written so far; notice a doctor that has died."""
        if self.process is None:
            return
        self._read_available()
        if self.process.poll() is not None:
            self._read_available()
            self._ended()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """The run's last rows are written: let the doctor read them, hand on its last alerts, reap it."""
        if self.process is None:
            return
        process = self.process
        try:
            process.stdin.write(FINISH)
            process.stdin.close()
        except OSError:  # it is gone already
            pass
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            for stream in (process.stdout, process.stderr):
                selector.register(stream, selectors.EVENT_READ)
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=max(0.0, deadline - time.monotonic())):
                    if self._read(key.fileobj) is None:  # its end: the process closed it
                        selector.unregister(key.fileobj)
        if process.poll() is None:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                self._fail(f"did not finish reading the run within {timeout:.0f} s and was stopped")
        self._ended(closing=True)

    # --- internals ----------------------------------------------------------------------------
    def _read_available(self) -> None:
        for stream in (self.process.stdout, self.process.stderr):
            while self._read(stream):
                pass

    def _read(self, stream) -> bool | None:
        """Read what the stream holds now: True if something, False if nothing yet, None at its end."""
        try:
            data = os.read(stream.fileno(), 65536)
        except BlockingIOError:
            return False
        except OSError:
            return None
        if not data:
            return None
        if stream is self.process.stderr:
            self._err = (self._err + data)[-4000:]  # its last words, for a failure message
            return True
        self._out += data
        *lines, self._out = self._out.split(b"\n")
        for line in lines:
            self._message(line)
        return True

    def _message(self, line: bytes) -> None:
        try:
            message = json.loads(line)
        except ValueError:
            return
        if "alert" in message:
            self.on_alert(message["alert"], message.get("step"))
        elif "error" in message:
            self._fail("failed:\n" + str(message["error"]))

    def _ended(self, closing: bool = False) -> None:
        """The process has exited: a failure unless we asked it to finish and it said 0."""
        code = self.process.returncode
        self.process = None
        if code != 0 or not closing:
            detail = self._err.decode("utf-8", "replace").strip()
            self._fail(f"stopped (exit code {code})" + (f":\n{detail}" if detail else ""))

    def _fail(self, what: str) -> None:
        if not self.failed:
            self.failed = True
            self.on_failure(what)
