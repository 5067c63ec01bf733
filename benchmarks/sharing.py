"""Runs sharing one machine (issue 15): throughput of concurrent runs with `threads: auto` against one
run alone, and against the same runs with torch's default threads (every run takes every core).

    python benchmarks/sharing.py                    # default preset, 1 / 2 / 4 runs, auto and torch default
    python benchmarks/sharing.py --parts page       # what the Live page costs the run it watches
    python benchmarks/sharing.py --parts ceiling    # two runs on a core each (pinned): the most two runs can make
    python benchmarks/sharing.py --parts hog check  # beside a 1-core busy loop; what the budget check costs
    python benchmarks/sharing.py --config configs/regression.yaml  # the preset issue 15 measured first

Each run is a real `python -m trainer run` started the way the dashboard starts one
(trainer.runs.process.start_new: thread share and OpenMP environment), on the default Shakespeare
preset. A run's speed is the median speed/steps_per_s of the rows it logged while every run of the
group was live, after SETTLE_S (start-up, and the 5 s a running trainer takes to see a new
neighbour). Figures:
- two runs: total throughput against one run alone (target >= 1.5x), and each run against one run
  alone with half the cores (threads=1 here; target >= 0.75x);
- four runs: total against one alone (target >= 1.5x);
- --parts ceiling: two runs on a core each (one thread, pinned), the most two runs can make on this
  host whatever their threads, and two with threads auto, against one run alone, alternated;
- --parts page: one run's steps/s with the Live page open in Chromium against no page (target: the
  page costs <= 10%), alternated; measured from OPENING_S after the page was opened (its load, and
  what threads: auto does about it, are reported apart); --baseline DIR adds the Live page of
  another checkout's dashboard (`git archive COMMIT | tar -x -C DIR`) to the alternation;
  --page-threads auto 1 2 repeats the pair at fixed thread counts (what auto's choice costs beside
  the page).
- --parts hog: one run beside a busy loop that takes one core, with threads auto against the equal
  share that ignores other work (threads = all the cores, what auto gave one run alone before it
  measured other work) and against threads=1, alternated; with what auto chose and why.
- --parts check: what one look at the budget costs a running trainer (ThreadShare.recheck: our
  live runs' status.json, /proc for the host and for each run of ours), against one step of the
  default preset; it runs once every RECHECK_S (5 s).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records
from trainer.rundir.status import read_status
from trainer.runs import control, process

SETTLE_S = 8.0
# --parts page: from opening the Live page to its measured window: the load (most of a core for
# several seconds) and the two budget checks (RECHECK_S apart) that see it end
OPENING_S = 20.0


# --config: the preset every run of this benchmark trains (None: the default Shakespeare preset)
PRESET: str | None = None


def start(runs_dir: Path, run_id: str, threads: str, max_steps: int, log_interval: int = 10) -> int:
    """Start a run as the dashboard does; its pid."""
    sets = [f"max_steps={max_steps}", "eval_interval=100000", "sample_interval=100000", f"threads={threads}"]
    sets += ["checkpoint_interval=100000", f"log_interval={log_interval}"]
    return process.start_new(PRESET, sets, runs_dir, run_id)[1]


def wait_running(run_dir: Path, pid: int, timeout_s: float = 300.0) -> float:
    """When the run logged its first row. Its process decides whether it is still starting: under
    the helpers' load a trainer can take longer than STALE_AFTER_SECONDS between its config print
    and its status.json, and run_state calls such a run crashed meanwhile."""
    deadline = time.monotonic() + timeout_s
    while not (run_dir / rf.METRICS_FILE).exists():
        if time.monotonic() > deadline or not _alive(pid):
            log = (run_dir / rf.LOG_FILE).read_text(errors="replace").splitlines()[-5:]  # the temp dir goes
            raise RuntimeError(f"{run_dir.name} did not start; its train.log ends: " + " | ".join(log))
        time.sleep(0.2)
    return time.time()


def _alive(pid: int) -> bool:
    process.reap()  # our child: a zombie until reaped
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def stop_started(runs_dir: Path, run_id: str, pid: int) -> None:
    """Stop a run this benchmark started, also one that has not written its status.json yet."""
    if (runs_dir / run_id / rf.STATUS_FILE).exists():
        control.stop(runs_dir, run_id, grace_s=30)
    elif _alive(pid):
        os.kill(pid, signal.SIGKILL)  # still setting up: nothing of it to keep


def group(
    runs_dir: Path,
    name: str,
    n: int,
    threads: str,
    seconds: float,
    statuses: list | None = None,
    log_interval: int = 10,
    pin: bool = False,
) -> list[float]:
    """n runs at once for `seconds` of overlap; each run's median steps/s over the overlap.
    statuses: gets each run's status.json as it was at the end of the overlap. pin: run i on core
    i alone (every thread of its process and of its children), what no thread budget can beat."""
    pids = {}
    try:
        for run_id in [f"{name}-{i}" for i in range(n)]:
            pids[run_id] = start(runs_dir, run_id, threads, max_steps=10**6, log_interval=log_interval)
        begun = max(wait_running(runs_dir / r, pid) for r, pid in pids.items())
        for i, pid in enumerate(pids.values() if pin else ()):  # training: its threads are there
            pin_to(pid, i % (os.cpu_count() or 1))
        time.sleep(SETTLE_S + seconds)
        if statuses is not None:
            statuses.extend(json.loads((runs_dir / r / rf.STATUS_FILE).read_text()) for r in pids)
    finally:  # also when one did not start: the others must not train on after the benchmark
        for run_id, pid in pids.items():
            stop_started(runs_dir, run_id, pid)
    ids = list(pids)
    window = (begun + SETTLE_S, begun + SETTLE_S + seconds)
    speeds = []
    for run_id in ids:
        rows = [
            r[rf.STEPS_PER_S]
            for r in read_records(runs_dir / run_id / rf.METRICS_FILE)
            if rf.STEPS_PER_S in r and window[0] <= r["time"] <= window[1]
        ]
        speeds.append(statistics.median(rows) if rows else float("nan"))
    return speeds


def pin_to(pid: int, core: int) -> None:
    """Every thread of process pid and of its children on `core` (Linux: an affinity is per thread)."""
    try:
        procs = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        for proc in procs:
            for thread in proc.threads():
                os.sched_setaffinity(thread.id, {core})
    except (psutil.Error, OSError):
        pass  # a thread that ended meanwhile


def parts_ceiling(args, runs_dir: Path) -> None:
    """What two runs at once can make on this host at best, against one run alone: each on a core
    of its own with one thread (pinned: no thread budget can do better than no sharing of a core),
    beside two runs with threads auto, alternated --repeats times. Two runs reach 1.5x one alone
    only where this ceiling is above it (the issue's target; a run that gains much from its second
    thread leaves two runs little to gain on two cores)."""
    rows: dict[str, list[float]] = {"alone": [], "pinned": [], "auto": []}
    for repeat in range(args.repeats):
        order = ["alone", "pinned", "auto"]
        for label in order if repeat % 2 == 0 else order[::-1]:
            n, threads = (1, "auto") if label == "alone" else (2, "1" if label == "pinned" else "auto")
            rows[label].append(
                sum(group(runs_dir, f"{label}-{repeat}", n, threads, args.seconds, pin=label == "pinned"))
            )
    alone = statistics.median(rows["alone"])
    print(f"one run alone (auto): {', '.join(f'{v:.1f}' for v in rows['alone'])} steps/s (median {alone:.1f})")
    for label, what in (("pinned", "two runs, a core each (1 thread, pinned)"), ("auto", "two runs, threads auto")):
        total = statistics.median(rows[label])
        per_round = ", ".join(f"{v / a:.2f}x" for v, a in zip(rows[label], rows["alone"]))
        print(
            f"{what}: {', '.join(f'{v:.1f}' for v in rows[label])} steps/s in all (median {total:.1f}): "
            f"{total / alone:.2f}x one alone (per round {per_round}; target >= 1.5x)"
        )


def parts_runs(args, runs_dir: Path) -> None:
    statuses = []
    alone = group(runs_dir, "alone", 1, "auto", args.seconds, statuses)[0]
    half = group(runs_dir, "half", 1, "1", args.seconds)[0]
    chose = f"threads {statuses[0].get(rf.STATUS_THREADS)}: {statuses[0].get(rf.STATUS_THREADS_REASON)}"
    print(f"one run alone (auto, {chose}): {alone:6.1f} steps/s")
    print(f"one run alone, half the cores (1):    {half:6.1f} steps/s")
    for threads, label in (("auto", "threads auto"), (str(args.cores), "torch default")):
        two = group(runs_dir, f"two-{threads}", 2, threads, args.seconds)
        print(
            f"two runs, {label:13}: {two[0]:5.1f} + {two[1]:5.1f} = {sum(two):5.1f} steps/s, "
            f"{sum(two) / alone:.2f}x one alone (target >= 1.5x); each {min(two) / half:.2f}x of alone on half "
            "the cores (target >= 0.75x)"
        )
    for threads, label in (("auto", "threads auto"), (str(args.cores), "torch default")):
        four = group(runs_dir, f"four-{threads}", 4, threads, args.seconds)
        print(
            f"four runs, {label:13}: total {sum(four):5.1f} steps/s ({', '.join(f'{s:.1f}' for s in four)}), "
            f"{sum(four) / alone:.2f}x one alone (target >= 1.5x)"
        )


def page_cpu(server: psutil.Process) -> tuple[float, float]:
    """CPU seconds so far of the dashboard server (and its children) and of the Chromium this
    benchmark started (through playwright)."""
    from dashboard_latency import cpu_seconds

    return (
        cpu_seconds(lambda _: True, [server, *server.children(recursive=True)]),
        cpu_seconds(lambda c: "chromium" in c, psutil.Process().children(recursive=True)),
    )


def parts_page(args, runs_dir: Path) -> None:
    from app.harness import ROOT, chromium, dashboard, server_pid

    roots = {"Live open": ROOT} | ({"Live open, baseline": args.baseline.resolve()} if args.baseline else {})
    # each (page, threads) turn of a round; --page-threads 1 2 adds fixed thread counts beside auto
    turns = [(label, t) for t in args.page_threads for label in ["no page", *roots]]
    results: dict = {turn: [] for turn in turns}
    opening: dict = {turn: [] for turn in turns}  # the speed while the page loads (OPENING_S)
    cpu: dict = {turn: [] for turn in turns if turn[0] in roots}  # (dashboard server, Chromium) cores
    threads: dict = {turn: [] for turn in turns}  # the run's threads, each second of the window
    for repeat in range(args.repeats):
        # every other round in reverse: a turn's place in the round (after which turn, how long
        # since the last dashboard closed) is not always the same tree's
        for n, (label, setting) in enumerate(turns if repeat % 2 == 0 else turns[::-1]):
            run_id = f"page-{repeat}-{n}"
            # Each dashboard only for its own turn: one left open would tail the other turns' runs.
            with dashboard(runs_dir, root=roots.get(label, ROOT)) as url:
                pid = start(runs_dir, run_id, setting, max_steps=10**6)
                wait_running(runs_dir / run_id, pid)
                server = psutil.Process(server_pid(url))
                time.sleep(SETTLE_S)  # the run's start-up, in every turn
                # The page is measured open, after it has loaded: loading takes most of a core for
                # several seconds, and threads: auto gives a thread back until a check sees it end
                # (up to 2 x RECHECK_S later). The no-page turn waits as long, so both runs are as old.
                if label in roots:
                    with chromium() as page:
                        opened = time.time()
                        page.goto(f"{url}/live?run={run_id}")
                        time.sleep(max(0.0, opened + OPENING_S - time.time()))
                        begun = time.time()
                        before = page_cpu(server)
                        threads[label, setting].extend(threads_each_second(runs_dir / run_id, args.seconds))
                        after = page_cpu(server)
                    cpu[label, setting].append(tuple((b - a) / args.seconds for a, b in zip(before, after)))
                else:
                    opened = time.time()
                    time.sleep(OPENING_S)
                    begun = time.time()
                    threads[label, setting].extend(threads_each_second(runs_dir / run_id, args.seconds))
            control.stop(runs_dir, run_id, grace_s=30)
            records = read_records(runs_dir / run_id / rf.METRICS_FILE)
            for store, (since, until) in (
                (results, (begun, begun + args.seconds)),
                (opening, (opened, opened + OPENING_S)),
            ):
                rows = [r[rf.STEPS_PER_S] for r in records if rf.STEPS_PER_S in r and since <= r["time"] <= until]
                if not rows:
                    raise RuntimeError(
                        f"{run_id} ({label}) logged no speed in the window; see {runs_dir / run_id / rf.LOG_FILE}"
                    )
                store[label, setting].append(statistics.median(rows))
    for setting in args.page_threads:
        print(f"threads: {setting}")
        nopage = results["no page", setting]
        base = statistics.median(nopage)
        print(f"  steps/s, no page: {', '.join(f'{v:.1f}' for v in nopage)} (median {base:.1f})")
        print(f"      the run's threads (seconds at each count): {threads_seen(threads['no page', setting])}")
        for label in roots:
            speeds = results[label, setting]
            watched = statistics.median(speeds)
            print(f"  steps/s, {label}: {', '.join(f'{v:.1f}' for v in speeds)} (median {watched:.1f})")
            print(
                f"  {label}: the Live page costs the run {100 * (1 - watched / base):.1f}% of its steps/s (target <= 10%)"
            )
            # each round's turn against the no-page turn of the same round: a machine whose speed drifts
            # between rounds moves both alike
            paired = sorted(100 * (1 - w / b) for w, b in zip(speeds, nopage))
            print(
                f"      per round: {', '.join(f'{v:.1f}%' for v in paired)} (median {statistics.median(paired):.1f}%)"
            )
            server, browser = (statistics.median(c) for c in zip(*cpu[label, setting]))
            print(
                f"      CPU while it was open (median, in cores): dashboard server {server:.2f}, Chromium {browser:.2f}"
            )
            print(f"      the run's threads (seconds at each count): {threads_seen(threads[label, setting])}")
            loading = sorted(100 * (1 - w / b) for w, b in zip(opening[label, setting], opening["no page", setting]))
            print(
                f"      while the page loaded (its first {OPENING_S:.0f} s, not in the figure): per round "
                f"{', '.join(f'{v:.1f}%' for v in loading)} (median {statistics.median(loading):.1f}%)"
            )


def threads_each_second(run_dir: Path, seconds: float) -> list[int]:
    """The threads the run's status.json says it runs, read once a second for `seconds`: with
    threads: auto a run rechecks its share every few seconds, and a page that loads takes cores."""
    seen, end = [], time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
        status = read_status(run_dir) or {}
        if isinstance(status.get(rf.STATUS_THREADS), int):
            seen.append(status[rf.STATUS_THREADS])
    return seen


def threads_seen(seen: list[int]) -> str:
    return ", ".join(f"{n}: {seen.count(n)} s" for n in sorted(set(seen))) or "not recorded"


def parts_hog(args, runs_dir: Path) -> None:
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])  # one core of other work
    arms = {"auto": "auto", f"equal share ({args.cores})": str(args.cores), "1 thread": "1"}
    speeds: dict[str, list[float]] = {label: [] for label in arms}
    chosen = []
    try:
        for repeat in range(args.repeats):
            for label, threads in arms.items():
                statuses = []
                # A row a step: two threads beside the busy loop can take more than the window for 10.
                speed = group(runs_dir, f"hog-{repeat}-{threads}", 1, threads, args.seconds, statuses, 1)[0]
                speeds[label].append(speed)
                if threads == "auto":
                    status = statuses[0]
                    chosen.append(f"{status.get(rf.STATUS_THREADS)} ({status.get(rf.STATUS_THREADS_REASON)})")
    finally:
        hog.kill()
        hog.wait()
    median = {label: statistics.median(v) for label, v in speeds.items()}
    for label, values in speeds.items():
        print(
            f"beside a busy loop, {label:17}: {', '.join(f'{v:.2f}' for v in values)} (median {median[label]:.2f}) steps/s"
        )
    base = f"equal share ({args.cores})"
    print(
        f"auto / equal share: {median['auto'] / median[base]:.2f}x, auto / 1 thread: "
        f"{median['auto'] / median['1 thread']:.2f}x; auto chose, at the end of each window: {'; '.join(chosen)}"
    )


def parts_check(args, runs_dir: Path) -> None:
    from trainer.rundir import host_load
    from trainer.training import threads as threads_module

    ids = [f"check-{i}" for i in range(2)]  # two live runs of ours for the check to read and measure
    pids = [start(runs_dir, run_id, "1", max_steps=10**6) for run_id in ids]
    begun = max(wait_running(runs_dir / r, pid) for r, pid in zip(ids, pids))
    time.sleep(SETTLE_S)
    # Every call a full check: the 5 s between checks and the shortest window are lifted.
    every_s = threads_module.RECHECK_S
    threads_module.RECHECK_S, host_load.MIN_WINDOW_S = 0.0, 0.0
    share = threads_module.ThreadShare("auto", runs_dir, "check-probe")
    costs = []
    for _ in range(args.checks):
        t0 = time.perf_counter()
        share.recheck()
        costs.append(time.perf_counter() - t0)
        time.sleep(args.seconds / args.checks)  # spread over the window the runs' speed is taken in
    window = (begun + SETTLE_S, time.time())
    for run_id in ids:
        control.stop(runs_dir, run_id, grace_s=30)
    steps = [
        r[rf.STEPS_PER_S]
        for run_id in ids
        for r in read_records(runs_dir / run_id / rf.METRICS_FILE)
        if rf.STEPS_PER_S in r and window[0] <= r["time"] <= window[1]
    ]
    check_ms, step_ms = 1000 * statistics.median(costs), 1000 / statistics.median(steps)
    steps_between = every_s * 1000 / step_ms
    print(
        f"one budget check: median {check_ms:.2f} ms, p95 {1000 * sorted(costs)[int(0.95 * len(costs))]:.2f} ms "
        f"({len(costs)} checks, 2 live runs of ours); one step of the default preset beside them: {step_ms:.0f} ms; "
        f"a check is {100 * check_ms / step_ms:.2f}% of a step, and once every {every_s:.0f} s "
        f"({steps_between:.0f} steps) {100 * check_ms / step_ms / max(1.0, steps_between):.3f}% of each step"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["runs"], choices=["runs", "ceiling", "page", "hog", "check"])
    parser.add_argument("--seconds", type=float, default=20.0, help="overlap measured per group")
    parser.add_argument("--repeats", type=int, default=2, help="alternations for --parts ceiling, page and hog")
    parser.add_argument("--checks", type=int, default=200, help="budget checks timed by --parts check")
    parser.add_argument("--cores", type=int, default=None, help="torch's default threads (all cores)")
    parser.add_argument("--baseline", type=Path, help="--parts page: also another checkout's dashboard, alternated")
    parser.add_argument(
        "--page-threads",
        nargs="+",
        default=["auto"],
        help="--parts page: the runs' threads setting, each alternated with and without the page (e.g. auto 1 2)",
    )
    parser.add_argument(
        "--config",
        help="the preset the runs train (default: the Shakespeare default); the issue's own: configs/regression.yaml",
    )
    args = parser.parse_args()
    global PRESET
    PRESET = str(Path(args.config).resolve()) if args.config else None
    args.cores = args.cores or os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        runs_dir = Path(tmp) / "runs"
        runs_dir.mkdir()
        if "runs" in args.parts:
            parts_runs(args, runs_dir)
        if "ceiling" in args.parts:
            parts_ceiling(args, runs_dir)
        if "page" in args.parts:
            parts_page(args, runs_dir)
        if "hog" in args.parts:
            parts_hog(args, runs_dir)
        if "check" in args.parts:
            parts_check(args, runs_dir)


if __name__ == "__main__":
    main()
