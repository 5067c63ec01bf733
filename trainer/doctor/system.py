"""Detectors on the machinery: slowdown (speed/steps_per_s) and memory_growth (sys/rss_mb,
sys/cuda_mem_mb). lr_anomaly is in trainer/doctor/learning_rate.py."""

from __future__ import annotations

import math
from collections import deque

from trainer.doctor import remedies as R
from trainer.doctor.base import Detector, finite, fmt, mad_sigma, median
from trainer.rundir import run_format as rf

# The competing slowdown's words for who took the cores and what brings the speed back: one place,
# since neighbours.name_our_competitors puts the names of our own runs in their stead.
OTHER_PROCESSES = "another job, a browser drawing the dashboard"
FREE_THE_CORES = "free the cores and the speed comes back"


class ClockSpeed:
    """steps/s from the rows' wall-clock times, for runs that log no speed key (the Hugging Face
    Trainer logs none): steps between two train rows over the seconds between them.

    An interval in which an eval row arrived is left out, as the speed keys leave eval time out
    (docs/run-format.md). A pause (a resume after an hour off, a checkpoint save) is one interval of
    near-zero speed, which the detector's median of `Slowdown.window` intervals passes over; a
    change of logging cadence changes nothing, since steps and seconds are counted together.
    Rows less than `min_interval_s` apart are counted into the next interval: rows written in a burst
    (a log written after its run, or flushed a second at a time) hold no training time between them,
    and timing them read 4e5 steps/s and a -87% "slowdown" in a TensorBoard log written in 0.1 s.
    """

    min_interval_s = 1e-3

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
        if self.step is not None and not self.eval_since and time - self.time < self.min_interval_s:
            return None  # the interval stays open: this row's clock times its writing, not steps
        speed = None
        if self.step is not None and time > self.time and not self.eval_since:
            speed = (step - self.step) / (time - self.time)
        self.step, self.time, self.eval_since = step, time, False
        return speed


class Slowdown(Detector):
    """steps/s down by min_drop or more, sustained, against the run's own earlier level (report 003:
    1.0 to 0.6 steps/s). Read from speed/steps_per_s (else a throughput key); a run that logs
    neither is timed by its rows' wall-clock times (ClockSpeed).

    statistic: the baseline is the best median of `window` speeds seen so far (counted from
    skip_rows on, so start-up is not the baseline); the speed now is the median of the last
    short_rows speeds, so a drop is seen two rows after it starts, not half a window later.
    fires while the speed now is below (1 - min_drop) x baseline, counting its time from the first
    row under recover_fraction x baseline (where it left its usual range; a speed back above that
    ends the episode, so noise at the threshold does not restart the count, and a decline is timed
    from where it began rather than from where it crossed the threshold):
    - at once when the last short_rows speeds are all at or under (1 - fast_drop) x baseline and
      that drop is fast_z robust sd of the baseline's log speeds: a halving held over three rows is
      no jitter, and a second job of the same size on the cores does exactly that (measured on 2
      cores: -51%); a dip of a few percent of the run (wildsuite's healthy `shared_machine`: 0.6-0.8x
      for 1-3% of the run) never halves the speed;
    - else when the speed now has been below the threshold for confirm_rows rows and the streak has
      held for hold_share of the run: a competing job that takes the cores for a few percent of the
      run costs it a few percent of its time and goes, while a slowdown that holds is what costs a
      run its day. Where the run's length is unknown (no max_steps), it is taken as twice the steps
      so far: seen at a uniformly random point of its life, a run's median length is twice its age
      (Gott's delta-t argument); 5% of the steps so far called a dip of 1.5-4% of a run seen a fifth
      of the way through a slowdown (6 `shared_machine` runs of the second generator's dev block).
      Since that length is a guess, the window's median must be below the threshold as well (half a
      window of slow rows): a dip of 5-7 rows early in such a run passed twice its age's 5%.
    Either rule waits until the slow streak has lasted min_hold_s by the rows' clock (below).
    min_drop is a quarter: report 003 lost 40%, and a sustained 25-30% (throttling, a degrading data
    loader) was missed at a third (wildsuite `slowdown_slow`). Nothing fires once the speed is back
    above the threshold: the window's median lags a dip that already ended by half a window.
    cause: when the process's own CPU use (sys/cpu_percent, median of the same last rows against its
    median over the baseline's window) fell by
    starved_cpu_drop or more as well, the trainer is being starved (another job on the cores,
    throttling, I/O or swap waits) rather than doing more work per step: the alert says so and
    proposes no config change, since none would help. (CPU use falls less than speed: torch's
    threads spin at their barriers while one of them waits for a core; measured 2 cores shared
    with a second run: -51% steps/s, -26% CPU.) Where the run logs sys/other_cpu (our trainer
    does), a rise of competing_cores or more in the cores other processes kept busy says the same
    directly, whatever its own CPU use did: a 2-thread trainer beside a browser drawing the Live page
    slowed 26% with its CPU use down less than a fifth, and was told to shrink its micro-batch. So does
    a rise of waiting_cores or more with a rise in the time its threads waited for a core
    (sys/cpu_wait), which needs no knowledge of the host's size: a process busy 30% of the time took
    0.17 cores and slowed the default run on 2 cores 41%, under competing_cores, and would take
    nothing from a run on 2 of 16 cores.
    """

    code = "slowdown"
    title = "Training slowed down"
    cause = "Memory pressure, thermal throttling, a competing process, or a data pipeline stall."
    window = 20
    skip_rows = 5
    min_drop = 0.25
    short_rows = 3
    fast_drop = 0.5
    fast_z = 6.0
    confirm_rows = 3
    hold_share = 0.05
    recover_fraction = 0.8
    starved_cpu_drop = 0.2
    # A quarter of a core more taken by other processes: what the thread budget already counts as
    # other work (trainer/rundir/sharing.py, IGNORED_LOAD); less is a browser tab or an editor.
    competing_cores = 0.25
    # Or other processes took less, waiting_cores or more, and its own threads waited for a core: the
    # seconds a second they spent runnable but not running (sys/cpu_wait) rose by wait_rise and
    # wait_factor x. Measured on 2 cores, the default Shakespeare run: 0.016-0.025 alone; 0.097 beside
    # a process busy 15% of each 0.1 s, 0.175 at 30%, 0.32 at 60%; 0.07-0.11 with Chromium drawing its
    # Live page (which slowed it 37% with other processes' cores up 0.11 -> 0.28). Its main thread's
    # involuntary context switches were tried first and missed that one: 60 -> 68 a second (a count
    # of preemptions, not of the time they cost). On a host with cores to spare, the same process
    # takes cores but the run's threads do not wait.
    waiting_cores = 0.1
    wait_rise = 0.04
    wait_factor = 2.0
    # Memory (sys/rss_mb, else sys/cuda_mem_mb) up by this share against the best window: the evidence
    # for memory pressure (swapping, an allocator at its limit) that a smaller micro-batch relieves;
    # without it that remedy would be a guess (issue 11: remedies the run's numbers support).
    memory_rise = 0.1
    rearm_rows = 5
    # Either rule also needs the slow streak to have lasted min_hold_s of wall-clock time (where the rows
    # carry a clock): on this shared 2-core VM with nothing else running, the HF example (a small GPT-2
    # at ~75 steps/s, rows every 2 steps) ran up to 31-50% under its best in windows of 1 s, 7-31% in
    # windows of 10 s, 4-25% in 15 s and 0-17% in 30 s (6 runs of a minute, benchmarks/speed_jitter.py),
    # and raised 2-3 slowdowns a run (5% of its 3000 steps is 2 s); with 15 s, one in 2 of 3 runs. A
    # dip shorter than that has cost the run seconds, and the machine's own wander is as large.
    min_hold_s = 30.0
    thresholds = (
        "window",
        "skip_rows",
        "min_drop",
        "short_rows",
        "fast_drop",
        "fast_z",
        "confirm_rows",
        "hold_share",
        "recover_fraction",
        "starved_cpu_drop",
        "competing_cores",
        "waiting_cores",
        "wait_rise",
        "wait_factor",
        "min_hold_s",
        "memory_rise",
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
        self.other: deque = deque(maxlen=self.window)  # sys/other_cpu: cores other processes kept busy
        self.wait: deque = deque(maxlen=self.window)  # sys/cpu_wait: its threads' seconds waiting for a core
        self.memory: deque = deque(maxlen=self.window)  # sys/rss_mb, else sys/cuda_mem_mb
        self.rows = 0  # speeds seen in this series (the first skip_rows are start-up)
        self.baseline = None
        self.baseline_spread = 0.0  # robust sd of the log speeds in the baseline's window
        self.baseline_step = None
        self.baseline_cpu = None  # median CPU use when the speed baseline was set
        self.baseline_other = None  # median sys/other_cpu then
        self.baseline_wait = None  # median sys/cpu_wait then
        self.baseline_memory = None  # median memory then
        self.baseline_time = None  # wall time of the baseline row: who started since? (neighbours.py)
        self.slow_since = None  # first step of the current streak below the threshold
        self.slow_since_time = None  # and its row's wall-clock time
        self.first_time = None  # the series' first row time: a clock that never moved is no clock

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
        now_time = row.get(rf.TIME)
        if self.first_time is None and finite(now_time):
            self.first_time = now_time
        if self.rows <= self.skip_rows:
            return None
        self.speeds.append(speed)
        cpu = row.get(rf.CPU_PERCENT)
        if finite(cpu):
            self.cpu.append(cpu)
        other = row.get(rf.OTHER_CPU)
        if finite(other):
            self.other.append(other)
        wait = row.get(rf.CPU_WAIT)
        if finite(wait):
            self.wait.append(wait)
        memory = row.get(rf.RSS_MB, row.get(rf.CUDA_MEM_MB))
        if finite(memory):
            self.memory.append(memory)
        if len(self.speeds) < self.window:
            return None
        level = median(self.speeds)
        if self.baseline is None or level > self.baseline:
            self._set_baseline(step, row, level)
        last = [self.speeds[-i] for i in range(self.short_rows, 0, -1)]  # a deque indexes its ends in O(1)
        now = median(last)
        if now >= self.recover_fraction * self.baseline:
            self.slow_since, self.slow_since_time, self.streak = None, None, 0
            self.clear()
            return None
        if self.slow_since is None:
            self.slow_since = step  # the speed left its usual range here: the hold counts from this row
            self.slow_since_time = now_time if finite(now_time) else None
        threshold = (1 - self.min_drop) * self.baseline
        if now >= threshold:
            self.streak = 0
            return None
        self.streak += 1
        fast = max(last) <= (1 - self.fast_drop) * self.baseline and (
            math.log(self.baseline / max(last)) > self.fast_z * self.baseline_spread
        )
        length = self.ctx.max_steps or 2 * step  # unknown: twice its age (see the class docstring)
        held = self.streak >= self.confirm_rows and step - self.slow_since >= self.hold_share * length
        if not self.ctx.max_steps:
            held = held and level < threshold  # a guessed length: half a window of slow rows as well
        if (fast or held) and self._lasted(now_time):
            return self._alert(step, row, now)
        return None

    def _lasted(self, now_time) -> bool:
        """The slow streak has lasted min_hold_s by the rows' clock; true where the rows carry none
        (a log imported without times: every row stamped at the import)."""
        if not (finite(now_time) and finite(self.slow_since_time) and finite(self.first_time)):
            return True
        if now_time <= self.first_time:
            return True  # the clock never moved
        return now_time - self.slow_since_time >= self.min_hold_s

    def _set_baseline(self, step, row, level) -> None:
        self.baseline, self.baseline_step = level, step
        self.baseline_spread = mad_sigma([math.log(v) for v in self.speeds])
        self.baseline_cpu = self._median(self.cpu)
        self.baseline_other = self._median(self.other)
        self.baseline_wait = self._median(self.wait)
        self.baseline_memory = self._median(self.memory)
        self.baseline_time = row.get(rf.TIME)

    def _median(self, values: deque, last: int | None = None) -> float | None:
        """Median of a sys series beside the speeds (of its last `last` rows), once it has a full
        window of rows: a series the run logs on fewer rows says nothing yet."""
        if len(values) < self.window:
            return None
        return median(list(values)[-last:] if last else values)

    def _alert(self, step, row, now):
        unit = {rf.STEPS_PER_S: "steps/s", rf.TIME: "steps/s (timed by the rows' wall-clock times)"}.get(
            self.key, self.key.rsplit("/", 1)[-1].replace("_per_s", "/s")
        )
        drop = 1 - now / self.baseline
        message = (
            f"training slowed from {fmt(self.baseline)} to {fmt(now)} {unit} (-{drop * 100:.0f}%) "
            f"since step {self.slow_since}, by step {step}"
        )
        evidence = {
            "baseline": self.baseline,
            "baseline_step": self.baseline_step,
            "now": now,
            "drop": round(drop, 3),
            "slow_since": self.slow_since,
            "series": self.key,
        }
        if finite(self.baseline_time) and finite(row.get(rf.TIME)):
            evidence.update(baseline_time=self.baseline_time, time=row[rf.TIME])
        # over the same rows as the speed now: a fast alert's window still holds the rows before the drop
        cpu_now = self._median(self.cpu, self.short_rows)
        if cpu_now is None or not self.baseline_cpu:
            evidence["cpu_logged"] = False  # nothing tells a starved trainer from a busier step
        other_now = self._median(self.other, self.short_rows)
        other_rise = None
        if self.baseline_other is not None and other_now is not None:
            evidence.update(other_cpu_baseline=self.baseline_other, other_cpu_now=other_now)
            other_rise = other_now - self.baseline_other
        competing = other_rise is not None and other_rise >= self.competing_cores
        wait_now = self._median(self.wait, self.short_rows)
        waiting = False
        if self.baseline_wait is not None and wait_now is not None:
            evidence.update(cpu_wait_baseline=self.baseline_wait, cpu_wait_now=wait_now)
            # its threads waited for a core, and other processes took some (more threads of its own
            # than cores wait too, but then nobody else took the cores, and its config is the cause)
            waiting = (
                wait_now - self.baseline_wait >= self.wait_rise
                and wait_now >= self.wait_factor * self.baseline_wait
                and (other_rise is None or other_rise >= self.waiting_cores)
            )
        memory_now = self._median(self.memory, self.short_rows)
        if self.baseline_memory and memory_now is not None:
            evidence.update(memory_baseline_mb=self.baseline_memory, memory_now_mb=memory_now)
            evidence["memory_grew"] = memory_now >= (1 + self.memory_rise) * self.baseline_memory
        if competing or waiting:
            evidence["competing"] = True
            evidence["waiting"] = waiting
            message += (
                f"; meanwhile {R.sharing_numbers(evidence, against=True)} at full speed: it is sharing the cores "
                f"with other processes ({OTHER_PROCESSES}), so no config change is proposed; {FREE_THE_CORES}"
            )
        elif self.baseline_cpu and cpu_now is not None and cpu_now < (1 - self.starved_cpu_drop) * self.baseline_cpu:
            evidence.update(cpu_percent_baseline=self.baseline_cpu, cpu_percent_now=cpu_now)
            message += (
                f"; its CPU use fell with it ({fmt(self.baseline_cpu)}% -> {fmt(cpu_now)}%): the trainer is being "
                "starved (another job on these cores, throttling, I/O or swap), so no config change is proposed; "
                "free the cores and the speed comes back"
            )
        return self.fire(step, message, evidence, R.for_alert(self.code, self.ctx, evidence, step))


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
