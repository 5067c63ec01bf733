"""Detectors on the machinery: slowdown (speed/steps_per_s) and memory_growth (sys/rss_mb,
sys/cuda_mem_mb). lr_anomaly is in trainer/doctor/learning_rate.py."""

from __future__ import annotations

from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt, median
from trainer.rundir import run_format as rf


class ClockSpeed:
    """steps/s from the rows' wall-clock times, for runs that log no speed key (the Hugging Face
    Trainer logs none): steps between two train rows over the seconds between them.

    An interval in which an eval row arrived is left out, as the speed keys leave eval time out
    (docs/run-format.md). A pause (a resume after an hour off, a checkpoint save) is one interval of
    near-zero speed, which the detector's median of `Slowdown.window` intervals passes over; a
    change of logging cadence changes nothing, since steps and seconds are counted together.
    """

    def __init__(self):
        self.step = None  # the last train row's step and time
        self.time = None
        self.eval_since = False  # an eval row arrived since that row

    def observe(self, step: int, row: dict) -> float | None:
        """The speed over the interval this row closes, or None (not a train row, an eval in it)."""
        if rf.VAL_LOSS in row:
            self.eval_since = True
            return None
        time = row.get(rf.TIME)
        if not finite(time) or (self.step is not None and step <= self.step):
            return None  # a row at the same step (a trainer's summary row) closes no interval
        speed = None
        if self.step is not None and time > self.time and not self.eval_since:
            speed = (step - self.step) / (time - self.time)
        self.step, self.time, self.eval_since = step, time, False
        return speed


class Slowdown(Detector):
    """steps/s down by min_drop or more, sustained, against the run's own earlier level (report 003:
    1.0 to 0.6 steps/s). Read from speed/steps_per_s (else a throughput key); a run that logs
    neither is timed by its rows' wall-clock times (ClockSpeed).

    statistic: median of the last `window` speeds against the best such median seen so far
    (counted from skip_rows on, so start-up is not the baseline)
    fires when the median < (1 - min_drop) x baseline for confirm_rows rows, and for hold_share of
    the run's steps (max_steps, else the steps so far): a competing job that takes the cores for a
    few percent of the run costs it a few percent of its time and goes (wildsuite's healthy
    `shared_machine`); a slowdown that holds is what costs a run its day. min_drop is a quarter:
    report 003 lost 40%, and a sustained 25-30% (throttling, a degrading data loader) was missed at a
    third (wildsuite `slowdown_slow`).
    cause: when the process's own CPU use (sys/cpu_percent, median over the same window) fell by
    starved_cpu_drop or more as well, the trainer is being starved (another job on the cores,
    throttling, I/O or swap waits) rather than doing more work per step: the alert says so and
    proposes no config change, since none would help. (CPU use falls less than speed: torch's
    threads spin at their barriers while one of them waits for a core; measured 2 cores shared
    with a second run: -51% steps/s, -26% CPU.)
    """

    code = "slowdown"
    title = "Training slowed down"
    cause = "Memory pressure, thermal throttling, a competing process, or a data pipeline stall."
    window = 20
    skip_rows = 5
    min_drop = 0.25
    confirm_rows = 3
    hold_share = 0.05
    recover_fraction = 0.8
    starved_cpu_drop = 0.2
    rearm_rows = 5
    thresholds = (
        "window",
        "skip_rows",
        "min_drop",
        "confirm_rows",
        "hold_share",
        "recover_fraction",
        "starved_cpu_drop",
    )

    def healthy_reason(self) -> str:
        return f"steps/s stayed within {self.min_drop:.0%} of the run's own best level"

    def __init__(self, ctx):
        super().__init__(ctx)
        self.key = None  # the speed key the run logs; rf.TIME while it has logged none
        self.clock = ClockSpeed()
        self._start_series()

    def _start_series(self) -> None:
        self.speeds: deque = deque(maxlen=self.window)
        self.cpu: deque = deque(maxlen=self.window)
        self.rows = 0  # speeds seen in this series (the first skip_rows are start-up)
        self.baseline = None
        self.baseline_step = None
        self.baseline_cpu = None  # median CPU use when the speed baseline was set
        self.baseline_time = None  # wall time of the baseline row: who started since? (neighbours.py)
        self.slow_since = None  # first step of the current streak below the threshold

    def observe(self, step, row):
        clocked = self.clock.observe(step, row)
        if self.key in (None, rf.TIME):
            key = next((k for k in (rf.STEPS_PER_S, *rf.THROUGHPUT.values()) if k in row), None)
            if key is not None and self.key == rf.TIME:
                self._start_series()  # a logged speed from here on, not comparable with the clock's
            self.key = key or rf.TIME
        speed = clocked if self.key == rf.TIME else row.get(self.key)
        if not finite(speed) or speed <= 0:
            return None
        self.observed += 1
        self.rows += 1
        if self.rows <= self.skip_rows:
            return None
        self.speeds.append(speed)
        cpu = row.get(rf.CPU_PERCENT)
        if finite(cpu):
            self.cpu.append(cpu)
        if len(self.speeds) < self.window:
            return None
        now = median(self.speeds)
        if self.baseline is None or now > self.baseline:
            self.baseline, self.baseline_step = now, step
            self.baseline_cpu = median(self.cpu) if len(self.cpu) == self.window else None
            self.baseline_time = row.get(rf.TIME)
        if now >= (1 - self.min_drop) * self.baseline:
            self.streak = 0
            if now >= self.recover_fraction * self.baseline:
                self.clear()
            return None
        if self.streak == 0:
            self.slow_since = step
        self.streak += 1
        held = step - self.slow_since >= self.hold_share * (self.ctx.max_steps or step)
        if self.streak < self.confirm_rows or not held:
            return None
        unit = {rf.STEPS_PER_S: "steps/s", rf.TIME: "steps/s (timed by the rows' wall-clock times)"}.get(
            self.key, self.key.rsplit("/", 1)[-1].replace("_per_s", "/s")
        )
        drop = 1 - now / self.baseline
        message = f"training slowed from {fmt(self.baseline)} to {fmt(now)} {unit} (-{drop * 100:.0f}%) by step {step}"
        evidence = {
            "baseline": self.baseline,
            "baseline_step": self.baseline_step,
            "now": now,
            "drop": round(drop, 3),
            "series": self.key,
        }
        if finite(self.baseline_time) and finite(row.get(rf.TIME)):
            evidence.update(baseline_time=self.baseline_time, time=row[rf.TIME])
        cpu_now = median(self.cpu) if len(self.cpu) == self.window else None
        if cpu_now is None or not self.baseline_cpu:
            evidence["cpu_logged"] = False  # nothing tells a starved trainer from a busier step
        if self.baseline_cpu and cpu_now is not None and cpu_now < (1 - self.starved_cpu_drop) * self.baseline_cpu:
            evidence.update(cpu_percent_baseline=self.baseline_cpu, cpu_percent_now=cpu_now)
            message += (
                f"; its CPU use fell with it ({fmt(self.baseline_cpu)}% -> {fmt(cpu_now)}%): the trainer is being "
                "starved (another job on these cores, throttling, I/O or swap), so no config change is proposed; "
                "free the cores and the speed comes back"
            )
            return self.fire(step, message, evidence, R.for_alert(self.code, self.ctx, evidence, step))
        return self.fire(
            step,
            message,
            evidence,
            R.for_alert(self.code, self.ctx, evidence, step),
        )


class MemoryGrowth(Detector):
    """RSS or device memory climbing steadily.

    statistic: median of the last `window` values per series, against its value when the detector
    armed (min_rows rows in, after warm-up)
    fires when it is > (1 + min_relative_growth) x and > min_growth_mb above that baseline, and it
    grew across each of the last `steady_windows` windows.
    """

    code = "memory_growth"
    title = "Memory growing"
    cause = "Something keeps tensors or history alive across steps (a leak), or the allocator fragments."
    series = (rf.RSS_MB, rf.CUDA_MEM_MB)
    window = 10
    min_rows = 20
    min_relative_growth = 0.2
    min_growth_mb = 100.0
    steady_windows = 3
    rearm_rows = 10
    thresholds = ("window", "min_rows", "min_relative_growth", "min_growth_mb", "steady_windows")

    def healthy_reason(self) -> str:
        return (
            f"memory (RSS and device) never grew steadily by more than {self.min_relative_growth:.0%} and "
            f"{self.min_growth_mb:g} MB after start-up"
        )

    def __init__(self, ctx):
        super().__init__(ctx)
        self.state = {
            key: {"recent": deque(maxlen=self.window), "medians": [], "baseline": None, "rows": 0}
            for key in self.series
        }

    def observe(self, step, row):
        alert = None
        any_seen, any_growing = False, False
        for key, s in self.state.items():
            value = row.get(key)
            if not finite(value):
                continue
            any_seen = True
            s["rows"] += 1
            s["recent"].append(value)
            now = median(s["recent"])
            s["medians"].append(now)
            if s["rows"] < self.min_rows or self.ctx.in_warmup(step):
                continue
            if s["baseline"] is None:
                s["baseline"] = now
                s["baseline_step"] = step
            base = s["baseline"]
            if now <= (1 + self.min_relative_growth) * base or now - base <= self.min_growth_mb:
                continue
            m = s["medians"]
            spaced = [m[-1 - i * self.window] for i in range(self.steady_windows + 1) if len(m) > i * self.window]
            steady = len(spaced) == self.steady_windows + 1 and all(
                a > b + 0.01 * base for a, b in zip(spaced, spaced[1:])
            )
            if steady:
                any_growing = True
                alert = alert or self._alert(step, key, base, s["baseline_step"], now)
        if any_seen:
            self.observed += 1
            if not any_growing:
                self.clear()
        return alert

    def _alert(self, step, key, base, base_step, now):
        rate = (now - base) / max(1, step - base_step) * 1000
        return self.fire(
            step,
            f"{key} grew steadily from {fmt(base)} MB (step {base_step}) to {fmt(now)} MB at step {step} "
            f"(+{rate:.0f} MB per 1000 steps)",
            evidence := {
                "series": key,
                "baseline_mb": base,
                "baseline_step": base_step,
                "now_mb": now,
                "mb_per_1000_steps": round(rate, 1),
            },
            R.for_alert(self.code, self.ctx, evidence, step),
        )
