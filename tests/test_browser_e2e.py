"""The dashboard in a real browser: one click trains Shakespeare live, stop and resume work.

Needs Debian's chromium (/usr/bin/chromium); skipped without it unless REQUIRE_BROWSER=1.
The trainer is the real one, made small through the documented environment overrides.
    REQUIRE_BROWSER=1 python -m pytest -m browser tests/test_browser_e2e.py
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from app.harness import CHROMIUM, ROOT, chromium, dashboard, stop_trainers

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {CHROMIUM} is missing: apt-get install chromium", pytrace=False)
    pytest.skip(
        f"{CHROMIUM} is missing (install chromium, or set REQUIRE_BROWSER=1 to make this fail)", allow_module_level=True
    )

# A small, honest run: the real default preset, shortened with environment overrides.
TINY = {
    "MAX_STEPS": "5000",
    "BATCH_SIZE": "2",
    "BLOCK_SIZE": "32",
    "LOG_INTERVAL": "1",
    "WARMUP_STEPS": "2",
    "EVAL_INTERVAL": "1000",
    "EVAL_STEPS": "2",
    "SAMPLE_INTERVAL": "1000",
    "CHECKPOINT_INTERVAL": "1000",
}
WAIT_MS = 120_000


def _points(page) -> int:
    """Points on the loss chart, from its caption ("Loss · 12 points · step 6")."""
    text = page.locator("text=/^Loss · \\d+ points/").first.inner_text(timeout=WAIT_MS)
    return int(re.search(r"(\d+) points", text).group(1))


def _row_state(page, run_id: str, state: str) -> None:
    page.locator(f".st-key-row_{run_id}").get_by_text(state, exact=True).wait_for(timeout=WAIT_MS)


def test_one_click_trains_live_then_stop_and_resume(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    try:
        with dashboard(runs_dir, TINY) as url, chromium() as page:
            page.goto(url)
            page.locator(".st-key-start_default button").click(timeout=WAIT_MS)
            page.wait_for_url(re.compile(r"/live$"), timeout=WAIT_MS)
            run_id = next(runs_dir.iterdir()).name

            page.locator("text=/^Loss · \\d+ points/").first.wait_for(timeout=WAIT_MS)
            first = _points(page)
            page.wait_for_function(
                """(n) => [...document.querySelectorAll('[data-testid="stCaptionContainer"]')]
                     .some(e => { const m = e.innerText.match(/^Loss · (\\d+) points/); return m && +m[1] > n; })""",
                arg=first,
                timeout=WAIT_MS,
                polling=100,
            )
            # Vega-Embed draws after the caption arrives (asynchronously), so wait for it, not count it;
            # every chart on a canvas: as SVG, a chart is a DOM node per point, redrawn each refresh.
            page.locator(".vega-embed canvas").first.wait_for(state="visible", timeout=WAIT_MS)
            page.wait_for_function(
                """() => { const charts = [...document.querySelectorAll('.vega-embed')];
                     return charts.length > 1 && charts.every(c => c.querySelector('canvas') && !c.querySelector('svg')); }""",
                timeout=WAIT_MS,
                polling=100,
            )

            page.goto(url)
            page.locator(f".st-key-stop_{run_id} button").click(timeout=WAIT_MS)
            _row_state(page, run_id, "stopped")
            assert (runs_dir / run_id / "checkpoints" / "last.pt").is_file()

            page.locator(f".st-key-resume_{run_id} button").click(timeout=WAIT_MS)
            _row_state(page, run_id, "running")
    finally:
        stop_trainers(runs_dir)


# A user's loop that would look at should_stop() only after an hour: the Stop button's SIGTERM ends it.
DEAF_SCRIPT = """
import sys, time, trainer
with trainer.init(run_id="deaf", runs_dir=sys.argv[1], doctor=False) as run:
    for step in range(1, 10**9):
        run.log({"train/loss": 1.0 / step}, step=step)
        time.sleep(0.01)
"""


def test_a_scripts_run_appears_on_an_empty_page_and_stop_ends_it_as_stopped(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with dashboard(runs_dir) as url, chromium() as page:
        page.goto(url)
        page.get_by_text("No runs yet").wait_for(timeout=WAIT_MS)
        script = subprocess.Popen([sys.executable, "-c", DEAF_SCRIPT, str(runs_dir)], env=env)
        try:
            _row_state(page, "deaf", "running")
            # the page reran whole when the first run appeared: no stale empty state above the row
            page.get_by_text("No runs yet").wait_for(state="detached", timeout=WAIT_MS)
            page.locator(".st-key-stop_deaf button").click(timeout=WAIT_MS)
            page.get_by_text("it is sent SIGTERM").wait_for(timeout=WAIT_MS)
            _row_state(page, "deaf", "stopped")  # after the grace period, by the page's SIGTERM
            assert script.wait(timeout=60) == -15
        finally:
            script.kill()
    status = json.loads((runs_dir / "deaf" / "status.json").read_text())
    assert status["message"].endswith("SIGTERM after a stop request it had not acted on")
