"""What the Live page costs the browser: Chromium's CPU while one Live tab follows a run that logs
fast, and where its main thread spends the time (a JS CPU profile through playwright's CDP session).

    PYTHONPATH=. python benchmarks/browser_cost.py [--rate 100] [--prefill 20000] [--seconds 20]
                                                   [--repeats 2] [--baseline DIR] [--profile]

A writer process (the real writer, trainer.rundir.writer) logs PREFILL rows at once, then RATE
rows/s. One headless Chromium tab opens the Live page on that run; after the first chart and a
settle, over SECONDS: Chromium's CPU (all its processes, in cores), how often the loss caption
changed (the page kept up), and with --profile the JS functions with the most self time.
--baseline DIR: the same measurement against another checkout (`git archive COMMIT | tar -x -C DIR`),
alternated with this one REPEATS times, so both see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from dashboard_latency import cpu_seconds

from app.harness import ROOT, chromium, dashboard

WAIT_MS = 120_000
SETTLE_MS = 6000
WRITER = """
import signal, time, math
from trainer.rundir.writer import open_run
run = open_run({runs!r}, "w0", config={{"task": "char_lm", "max_steps": 10**9}})
run.set_status(state="running", task="char_lm", max_steps=10**9)
stopping = []
signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
def row(step):
    return {{"train/loss": 2 + math.sin(step / 50) + (3 if step % 997 == 0 else 0), "lr": 1e-3 * (1 + step % 7),
             "grad/norm": 1.0 + math.cos(step / 30)}}
for step in range(1, {prefill} + 1):
    run.log(step, row(step))
run.flush()
step, started = {prefill}, time.monotonic()
while not stopping:
    step += 1
    run.log(step, row(step))
    time.sleep(max(0.0, started + (step - {prefill}) / {rate} - time.monotonic()))
run.finish("stopped")
"""
CAPTION_CHANGES_JS = """() => {
  window.__changes = 0;
  let last = null;
  setInterval(() => {
    const el = [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
      .find(e => e.textContent.startsWith('Loss · '));
    if (el && el.textContent !== last) { last = el.textContent; window.__changes += 1; }
  }, 20);
}"""


def top_functions(profile: dict, n: int = 15) -> list[tuple[str, float]]:
    """The n functions with the most self time in a CDP Profiler profile: (name @ file, ms)."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    self_us = collections.Counter()
    for sample, delta in zip(profile["samples"], profile["timeDeltas"]):
        frame = nodes[sample]["callFrame"]
        where = frame["url"].rsplit("/", 1)[-1] or "-"
        self_us[f"{frame['functionName'] or '(anonymous)'} @ {where}"] += delta
    return [(name, round(us / 1000, 1)) for name, us in self_us.most_common(n)]


def measure_once(root: Path, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="browser-cost-") as tmp:
        runs_dir = Path(tmp) / "runs"
        runs_dir.mkdir()
        script = WRITER.format(runs=str(runs_dir), prefill=args.prefill, rate=args.rate)
        writer = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            with dashboard(runs_dir, root=root) as url, chromium() as page:
                mine = psutil.Process().children(recursive=True)
                page.goto(f"{url}/live?run=w0")
                page.get_by_text("Loss · ", exact=False).first.wait_for(timeout=WAIT_MS)
                page.wait_for_timeout(SETTLE_MS)
                page.evaluate(CAPTION_CHANGES_JS)
                cdp = page.context.new_cdp_session(page) if args.profile else None
                if cdp:
                    cdp.send("Profiler.enable")
                    cdp.send("Profiler.start")
                before, t0 = cpu_seconds(lambda c: "chromium" in c, mine), time.monotonic()
                page.wait_for_timeout(args.seconds * 1000)
                elapsed = time.monotonic() - t0
                out = {
                    "chromium_cores": round((cpu_seconds(lambda c: "chromium" in c, mine) - before) / elapsed, 3),
                    "loss_caption_changes_per_s": round(page.evaluate("window.__changes") / elapsed, 2),
                }
                if cdp:
                    out["js_self_ms_top"] = top_functions(cdp.send("Profiler.stop")["profile"])
                return out
        finally:
            writer.terminate()
            writer.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=100, help="rows/s the run logs")
    parser.add_argument("--prefill", type=int, default=20_000, help="rows logged before the page opens")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", type=Path, help="another checkout's root, measured alternately")
    parser.add_argument("--profile", action="store_true", help="a JS CPU profile of the Live tab too")
    args = parser.parse_args()
    roots = {"ours": ROOT} | ({"baseline": args.baseline.resolve()} if args.baseline else {})
    results = {label: [] for label in roots}
    load_before = psutil.getloadavg()
    for _ in range(args.repeats):
        for label, root in reversed(roots.items()):
            results[label].append(measure_once(root, args))
            print(label, json.dumps(results[label][-1]), flush=True)
    summary = {
        label: {
            key: statistics.median(r[key] for r in runs) for key in ("chromium_cores", "loss_caption_changes_per_s")
        }
        for label, runs in results.items()
    }
    if args.baseline:
        summary["chromium_cores_ours_over_baseline"] = round(
            summary["ours"]["chromium_cores"] / summary["baseline"]["chromium_cores"], 2
        )
    summary["load_average_before"] = [round(x, 2) for x in load_before]
    summary["load_average_after"] = [round(x, 2) for x in psutil.getloadavg()]
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
