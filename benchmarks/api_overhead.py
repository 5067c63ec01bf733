"""What trainer.init costs a plain loop: (a) step time of the example's loop (examples/plain_loop.py:
tiny MLP, one CPU thread) with and without run.log of 10 scalars per step, the online doctor on;
(b) points per second through run.log against TensorBoard's SummaryWriter.add_scalar.

    PYTHONPATH=. python benchmarks/api_overhead.py [--steps 2000] [--rounds 21] [--points 200000]
        [--paired-seconds 60] [--hidden 64]

(a) runs `rounds` rounds in one process; each round has one block of `steps` steps without the API,
one with it and a second one without, in rotating order (each arm first, second and third alike: a
drift of the machine's speed during a round falls on the arms alike). The figure is the median of the
per-round overheads (api block / plain block of the same round), with their quartiles; the ratio of
the arms' medians is printed beside it, and the same statistic for the second plain block against
the first (no API in either): the noise floor, what the measure reads when there is nothing to read.
Each block with the API ends only when the background thread has written its rows (run.flush), so
writing them is counted. Also measured apart: the time spent inside the run.log calls themselves (a
perf_counter around each call), the part of the overhead that sits on the training thread whatever
the machine does. The online doctor runs in a child process
(trainer/doctor/follow.py): its CPU time is reported apart, and the total CPU per step (training
process + doctor process) beside the plain loop's. Target: at most 1% of step time.

(a2) Paired short blocks, for the part on the training thread (--paired-seconds, 0 skips it): for
that many seconds, rounds of five 20-step blocks in a random order each round: the plain loop, the
plain loop again (the floor), a call to a function that does nothing (what the loop pays to build
its dict and call any logger, before the logger does anything), a stand-in logger whose log() only appends (step, time, a copy of the
dict) to a queue a thread empties once a second (what any logger of this interface costs), and
run.log; each arm's median over rounds of (arm - plain) / plain with a 95% bootstrap interval. On
this VM a block's time scatters by ~12% (sd) whatever its length (20, 100 or 500 steps measured
alike), so short blocks give 25x the pairs of 500-step ones in the same time, and (a)'s rounds
cannot resolve 1% where this can. What it leaves out: the flush thread drains once a second and
the doctor's process reads the files whichever block runs then, so their effect falls on every arm
alike and cancels; and a median ignores a cost that falls on few blocks (a drain). So it measures
the calls and what they leave behind on the training thread, a lower bound of (a). --hidden widens
the MLP's hidden layers (64 is the example's): the same measure on a longer step.

(b) times log calls until the rows are on disk (finish) for run.log, and add_scalar until close()
for TensorBoard. Target: at least 10x. A shared machine is noisy: compare medians, and rerun.
"""

from __future__ import annotations

import argparse
import collections
import random
import statistics
import tempfile
import threading
import time

import psutil
import torch
from torch import nn

import trainer
from trainer.rundir import run_format as rf

SCALARS = 10
# the rest of the 10 scalars a step (a user's loop writes its keys literally: no formatting per step)
EXTRA = {f"extra/{k}": float(k) for k in range(3, SCALARS)}
PLAIN, AGAIN, NO_OP, STAND_IN, API = "plain", "plain again", "no-op call", "stand-in", "run.log"


def make_loop(hidden: int = 64):
    torch.manual_seed(0)
    x_all = torch.linspace(-2, 2, 4096).unsqueeze(1)
    y_all = torch.sin(3 * x_all)
    model = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def step():
        idx = torch.randint(0, len(x_all), (128,))
        pred = model(x_all[idx])
        loss = nn.functional.mse_loss(pred, y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, pred

    return step


def train(step, steps: int, first: int, log=None) -> float:
    """`steps` steps of the loop, with log(10 scalars, step=i) after each when given (the dict built
    in the loop, as a user's loop builds it); returns the seconds spent inside log()."""
    in_log = 0.0
    for i in range(first, first + steps):
        loss, pred = step()
        pred_mean = pred.mean()  # in every arm: a tensor op of the loop, not a cost of the API (~7 us)
        if log is not None:
            row = {rf.TRAIN_LOSS: loss, rf.LR: 1e-3, "pred/mean": pred_mean, **EXTRA}
            before = time.perf_counter()
            log(row, step=i)
            in_log += time.perf_counter() - before
    return in_log


def block(step, steps: int, run=None, first: int = 0) -> tuple[float, float, float, float]:
    """Wall and CPU seconds per step over one block, the seconds per step spent inside run.log, and
    the training thread's own CPU seconds per step; with a run, 10 scalars a step and its rows
    written. CPU time is the whole process's (the background thread included): on a busy shared
    machine it moves far less than the wall time. The thread's CPU time leaves out the flush
    thread, and counts what the API costs the loop's own thread: the calls, building the row, and
    whatever the calls leave behind (caches, allocations) that slows the step's own work."""
    start, cpu_start, thread_start = time.perf_counter(), time.process_time(), time.thread_time()
    in_log = train(step, steps, first, run.log if run is not None else None)
    thread = (time.thread_time() - thread_start) / steps
    if run is not None:
        run.flush()
    return (time.perf_counter() - start) / steps, (time.process_time() - cpu_start) / steps, in_log / steps, thread


class StandIn:
    """A logger that does the least this interface allows: log() appends (step, time, a copy of the
    dict) to a deque that a daemon thread empties once a second."""

    def __init__(self):
        self.queue: collections.deque = collections.deque()
        threading.Thread(target=self._drain, daemon=True).start()

    def log(self, metrics: dict, step: int) -> None:
        self.queue.append((step, time.time(), dict(metrics)))

    def _drain(self) -> None:
        while True:
            time.sleep(1.0)
            while self.queue:
                self.queue.popleft()


def no_op(metrics: dict, step: int) -> None:
    """A logger that does nothing: the loop still builds its dict and makes the call."""


def paired_block(step, steps: int, first: int, log=None) -> tuple[float, float, float]:
    """Wall seconds, the training thread's CPU seconds, and the seconds inside log(), over `steps`
    steps; with log, 10 scalars a step (the dict built in the loop, as a user's loop builds it)."""
    start, thread_start = time.perf_counter(), time.thread_time()
    in_log = train(step, steps, first, log)
    return time.perf_counter() - start, time.thread_time() - thread_start, in_log


def background_cpu(main_thread: int) -> float:
    """CPU seconds of this process's threads other than the training thread (the run's flush and
    writer threads, the stand-in's drain, torch's pool if any)."""
    return sum(t.user_time + t.system_time for t in psutil.Process().threads() if t.id != main_thread)


def relative(arm: list[tuple], plain: list[tuple], field: int) -> list[float]:
    """Per-round (arm - plain) / plain in percent, for one field of block()'s tuples."""
    return [100 * (a[field] - p[field]) / p[field] for a, p in zip(arm, plain)]


def median_interval(values: list[float], resamples: int = 1000, seed: int = 0) -> str:
    """The median with a 95% bootstrap interval (percentile method)."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(values, k=len(values))) for _ in range(resamples))
    low, high = medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]
    return f"{statistics.median(values):+.2f}% (95% interval {low:+.2f}% .. {high:+.2f}%)"


def doctor_cpu(run) -> float:
    """CPU seconds the run's doctor process has used so far (0 without one)."""
    pid = run.doctor.pid if run.doctor is not None else None
    if pid is None:
        return 0.0
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return times.user + times.system


def doctor_started(run, settle_s: float = 0.5, limit_s: float = 30.0) -> float:
    """Wait until the doctor process's CPU time stops growing (it has started); returns it."""
    deadline, last = time.monotonic() + limit_s, -1.0
    while time.monotonic() < deadline:
        now = doctor_cpu(run)
        if now == last:
            return now
        last = now
        time.sleep(settle_s)
    return last


def overheads(plain: list[float], api: list[float]) -> list[float]:
    """Per-round overheads in percent: each api block against the plain block of the same round."""
    return sorted(100 * (a - p) / p for p, a in zip(plain, api))


def spread(plain: list[float], api: list[float]) -> str:
    """Median and quartiles of the per-round overheads."""
    ratios = overheads(plain, api)
    q1, q2, q3 = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
    return f"median per round {q2:+.2f}% (quartiles {q1:+.1f}% / {q3:+.1f}%)"


def overhead(steps: int, rounds: int, runs_dir: str) -> None:
    step = make_loop()
    block(step, steps)  # warm-up
    plain, api, plain_cpu, api_cpu, in_log = [], [], [], [], []
    again, again_cpu = [], []  # a second plain block per round: what the measure reads with no API at all
    threads: dict[str, list[float]] = {"plain": [], "api": [], "again": []}  # the training thread's CPU
    with trainer.init(run_id="overhead", runs_dir=runs_dir, config={"lr": 1e-3}) as run:
        started = doctor_started(run)  # its start-up (Python, imports) is not a cost per step
        block(step, steps, run)  # warm-up of the API arm (first flush, first doctor reads)
        for r in range(rounds):
            arms = [(plain, plain_cpu, None, "plain"), (api, api_cpu, run, "api"), (again, again_cpu, None, "again")]
            for walls, cpus, arm_run, name in arms[r % 3 :] + arms[: r % 3]:  # each arm first, second, third alike
                wall, cpu, logged, thread = block(step, steps, arm_run, first=(r + 1) * steps)
                walls.append(wall)
                cpus.append(cpu)
                threads[name].append(thread)
                if arm_run is not None:
                    in_log.append(logged)
        time.sleep(1)  # it reads the last rows
        # all its CPU time while the blocks ran (idle polls between API blocks included), per API step
        dc = (doctor_cpu(run) - started) / ((rounds + 1) * steps)
    p, a = statistics.median(plain), statistics.median(api)
    pc, ac = statistics.median(plain_cpu), statistics.median(api_cpu)
    tc, lg = ac + dc, statistics.median(in_log)
    print(
        f"(a) step time, {rounds} rounds of three blocks of {steps} steps (plain, API, plain; rotating order), "
        f"{SCALARS} scalars/step, doctor on:"
    )
    print(f"    wall: overhead {spread(plain, api)}")
    # The same statistic between the two plain blocks of each round: the noise floor. An overhead
    # inside its spread is not shown either way.
    print(f"          plain against plain (no API): {spread(plain, again)}")
    print(
        f"          medians of the arms: plain loop {p * 1e3:.3f} ms/step, with run.log {a * 1e3:.3f} ms/step: {100 * (a - p) / p:+.2f}%"
    )
    print(
        f"    inside the run.log calls: {lg * 1e6:.2f} us a step (median block) = {100 * lg / p:.2f}% of the plain step"
    )
    print(
        f"    CPU of the training process: {pc * 1e3:.3f} ms/step plain, {ac * 1e3:.3f} with run.log: "
        f"{100 * (ac - pc) / pc:+.2f}% ({spread(plain_cpu, api_cpu)})"
    )
    tp, ta = statistics.median(threads["plain"]), statistics.median(threads["api"])
    print(
        f"    CPU of the training thread: {tp * 1e3:.3f} ms/step plain, {ta * 1e3:.3f} with run.log: "
        f"{(ta - tp) * 1e6:+.1f} us a step, {100 * (ta - tp) / tp:+.2f}% ({spread(threads['plain'], threads['api'])}); "
        f"plain against plain: {spread(threads['plain'], threads['again'])}"
    )
    print(
        f"    CPU of the doctor process: {dc * 1e6:.1f} us per API step; "
        f"total CPU {tc * 1e3:.3f} ms/step: {100 * (tc - pc) / pc:+.2f}% over the plain loop's"
    )
    print(f"    (per round overheads, %: {' '.join(f'{v:+.1f}' for v in overheads(plain, api))})")


def paired(seconds: float, steps: int, runs_dir: str, hidden: int = 64) -> None:
    step = make_loop(hidden)
    stand_in = StandIn()
    main_thread = threading.get_native_id()
    with trainer.init(run_id="paired", runs_dir=runs_dir, config={"lr": 1e-3}) as run:
        doctor_started(run)  # its start-up (Python, imports) is not a cost per step
        arms = {PLAIN: None, AGAIN: None, NO_OP: no_op, STAND_IN: stand_in.log, API: run.log}
        first = 0
        for _ in range(50):  # warm-up: every arm, the first flushes and the doctor's first reads
            for log in arms.values():
                paired_block(step, steps, first, log)
                first += steps
        results: dict[str, list[tuple]] = {name: [] for name in arms}
        order = random.Random(0)
        background, began = background_cpu(main_thread), time.perf_counter()
        doctor, deadline = doctor_cpu(run), began + seconds
        while time.perf_counter() < deadline:
            names = list(arms)
            order.shuffle(names)  # each arm first, second, third and fourth alike
            for name in names:
                results[name].append(paired_block(step, steps, first, arms[name]))
                first += steps
        elapsed = time.perf_counter() - began
        background, doctor = background_cpu(main_thread) - background, doctor_cpu(run) - doctor
    plain = statistics.median(r[0] for r in results[PLAIN]) / steps
    print(
        f"(a2) paired blocks, {len(results[PLAIN])} rounds of five {steps}-step blocks in random order "
        f"(plain, plain again, no-op call, stand-in logger, run.log), {SCALARS} scalars/step, doctor on; "
        f"MLP hidden width {hidden}, plain loop {plain * 1e3:.3f} ms/step (median block):"
    )
    for name in (AGAIN, NO_OP, STAND_IN, API):
        wall, thread = relative(results[name], results[PLAIN], 0), relative(results[name], results[PLAIN], 1)
        print(f"    {name}: wall {median_interval(wall)}; training thread's CPU {median_interval(thread)}")
    for name in (NO_OP, STAND_IN, API):
        inside = statistics.median(r[2] for r in results[name]) / steps
        print(
            f"    inside {name}'s log() calls: {inside * 1e6:.2f} us a step = {100 * inside / plain:.2f}% of the plain step"
        )
    print(
        f"    over {elapsed:.0f} s: background threads' CPU (the run's flush and writer, the stand-in's drain) "
        f"{background / elapsed * 1e3:.1f} ms a second, the doctor process's {doctor / elapsed * 1e3:.1f} ms a "
        "second; both fall on every arm alike (not in the figures above)"
    )


def throughput(points: int, runs_dir: str) -> None:
    calls = points // SCALARS
    row = {f"series/{k}": 0.5 for k in range(SCALARS)}
    start = time.perf_counter()
    run = trainer.init(run_id="throughput", runs_dir=runs_dir)
    for i in range(calls):
        run.log(row, step=i)
    run.flush()
    written = time.perf_counter() - start
    run.finish()  # the doctor process reads the last rows (and, in a run this short, starts) first
    finished = time.perf_counter() - start
    ours = calls * SCALARS / written
    print(
        f"(b) run.log: {ours:,.0f} points/s ({calls:,} calls of {SCALARS} scalars, until written, doctor on; "
        f"{calls * SCALARS / finished:,.0f} until finish() returned)"
    )
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        print(f"    TensorBoard is not importable ({e}); the SummaryWriter comparison is skipped")
        return
    start = time.perf_counter()
    writer = SummaryWriter(log_dir=f"{runs_dir}/tensorboard")
    for i in range(calls):
        for name, value in row.items():
            writer.add_scalar(name, value, i)
    writer.close()
    theirs = calls * SCALARS / (time.perf_counter() - start)
    print(f"    SummaryWriter.add_scalar: {theirs:,.0f} points/s; run.log is {ours / theirs:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="steps per block")
    parser.add_argument("--rounds", type=int, default=21, help="(a)'s rounds; 0 skips it")
    parser.add_argument("--points", type=int, default=200_000, help="(b)'s points; 0 skips it")
    parser.add_argument("--paired-seconds", type=float, default=60.0, help="how long (a2) runs; 0 skips it")
    parser.add_argument("--paired-block", type=int, default=20, help="steps per block in (a2)")
    parser.add_argument("--hidden", type=int, default=64, help="(a2)'s MLP hidden width (64: the example's)")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as the example: a tiny model is fastest on one thread
    with tempfile.TemporaryDirectory() as runs_dir:
        if args.rounds > 0:
            overhead(args.steps, args.rounds, runs_dir)
        if args.paired_seconds > 0:
            paired(args.paired_seconds, args.paired_block, runs_dir, args.hidden)
        if args.points > 0:
            throughput(args.points, runs_dir)


if __name__ == "__main__":
    main()
