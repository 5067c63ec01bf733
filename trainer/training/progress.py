"""Live progress of `python -m trainer run|resume|fork` on the terminal, and doctor alerts as they fire.

    step 120/2000 | loss 2.4100 | val 2.5000 | 11.2 steps/s | eta 2m48s
    alert warning loss_plateau at step 300: train/loss flat for 200 steps | try: python -m trainer fork ...

On a TTY a rich progress bar shows the same fields; elsewhere (CI, nohup, a background run's
train.log) each logged row prints one plain line, as nanoGPT does. `--quiet` shows neither (the
alerts are in events.jsonl all the same). The engine calls this at logged rows and alerts only,
never per step, and only on rank 0. The formatting functions are pure, so tests check them alone.
"""

from __future__ import annotations

import math
import sys
import time
from typing import TextIO

from trainer.doctor import remedies
from trainer.doctor.base import headline
from trainer.rundir import run_format as rf


def format_duration(seconds: float | None) -> str:
    """2m48s, 1h05m, 12s; "?" when unknown (no speed yet)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def eta_seconds(step: int, max_steps: int, steps_per_s: float | None) -> float | None:
    """Seconds left at steps_per_s; None when the speed is unknown or zero."""
    if not steps_per_s or not math.isfinite(steps_per_s) or steps_per_s <= 0:
        return None
    return max(0, max_steps - step) / steps_per_s


def _loss(value: float | None) -> str:
    return f"{value:.4f}" if value is not None and math.isfinite(value) else str(value).lower()


def format_progress(
    step: int,
    max_steps: int,
    train_loss: float | None,
    val_loss: float | None,
    steps_per_s: float | None,
    eta_s: float | None,
) -> str:
    """One progress line; a loss not measured yet (val before the first eval) is left out."""
    parts = [f"step {step}/{max_steps}"]
    if train_loss is not None:
        parts.append(f"loss {_loss(train_loss)}")
    if val_loss is not None:
        parts.append(f"val {_loss(val_loss)}")
    if steps_per_s is not None:
        parts.append(f"{steps_per_s:.1f} steps/s")
    parts.append(f"eta {format_duration(eta_s)}")
    return " | ".join(parts)


def format_alert(run_id: str, alert: dict) -> str:
    """One line for an alert event: severity, code, step, the message's first line, and the first
    remedy: a config change as the command that applies it, else what to do (the others are in events.jsonl)."""
    message = str(alert.get("message", "")).strip().splitlines()
    line = f"alert {alert.get('severity', 'warning')} {headline(alert)}"
    if message:
        line += f": {message[0]}"
    offered = [r for r in alert.get("remedy") or [] if isinstance(r, dict)]
    command = next((c for c in (remedies.command(run_id, r) for r in offered) if c), None)
    if command:
        return f"{line} | try: {command}"
    return f"{line} | {remedies.kind_of(offered[0])}: {offered[0].get('why', '')}" if offered else line


class PlainProgress:
    """One printed line per logged row and per alert; flushed, so train.log shows it at once."""

    def __init__(self, run_id: str, max_steps: int, stream: TextIO | None = None):
        self.run_id, self.max_steps = run_id, max_steps
        self.stream = stream or sys.stdout
        self.val_loss: float | None = None  # the latest eval's, shown until the next one
        # ETA from the wall-clock speed since the first row shown, so evals and checkpoints
        # count too (the logged steps/s leaves them out).
        self._first: tuple[float, int] | None = None

    def update(self, step: int, row: dict) -> None:
        """Show a logged metrics row (after the step's eval, so its val loss is current)."""
        steps_per_s = row.get(rf.STEPS_PER_S)
        now = time.perf_counter()
        first_time, first_step = self._first = self._first or (now, step)
        wall_speed = (step - first_step) / (now - first_time) if step > first_step else steps_per_s
        eta = eta_seconds(step, self.max_steps, wall_speed)
        self._show(step, format_progress(step, self.max_steps, row.get(rf.TRAIN_LOSS), self.val_loss, steps_per_s, eta))

    def alert(self, alert: dict) -> None:
        self._print(format_alert(self.run_id, alert))

    def close(self) -> None:
        pass

    def _show(self, step: int, line: str) -> None:
        self._print(line)

    def _print(self, line: str) -> None:
        print(line, file=self.stream, flush=True)


class RichProgress(PlainProgress):
    """A progress bar kept at the bottom of the terminal; alerts print above it."""

    def __init__(self, run_id: str, max_steps: int, stream: TextIO | None = None):
        # Lazy for start-up cost alone: only a run on a terminal draws a bar.
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        super().__init__(run_id, max_steps, stream)
        self.console = Console(file=self.stream, highlight=False)
        # No refresh thread: the bar is redrawn at logged rows only, so training pays nothing per step.
        self.bar = Progress(BarColumn(), TextColumn("{task.description}"), console=self.console, auto_refresh=False)
        self.task = self.bar.add_task(f"step ?/{max_steps}", total=max_steps)
        self.bar.start()

    def _show(self, step: int, line: str) -> None:
        self.bar.update(self.task, completed=step, description=line)
        self.bar.refresh()

    def _print(self, line: str) -> None:
        self.console.print(line, markup=False, soft_wrap=True)  # one line, however narrow the terminal

    def close(self) -> None:
        self.bar.stop()


def open_progress(
    run_id: str, max_steps: int, quiet: bool = False, stream: TextIO | None = None
) -> PlainProgress | None:
    """The renderer for stream (default stdout): a bar on a TTY, plain lines elsewhere, None if quiet."""
    if quiet:
        return None
    stream = stream or sys.stdout
    is_tty = getattr(stream, "isatty", lambda: False)()
    return (RichProgress if is_tty else PlainProgress)(run_id, max_steps, stream)
