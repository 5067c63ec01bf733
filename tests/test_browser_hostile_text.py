"""Run text is shown as text, everywhere (issue 12, security): samples, config values, alert messages
and remedies written by a run can hold HTML, script, markdown images and javascript: links. In
Chromium, every page must show them literally, run no script and fetch nothing they point at.

    REQUIRE_BROWSER=1 python -m pytest -m browser tests/test_browser_hostile_text.py
"""

import http.server
import threading
from pathlib import Path

import pytest

from app.harness import CHROMIUM, chromium, dashboard, free_port
from app.layout import PAGE_SPECS
from trainer.rundir import run_format as rf
from trainer.rundir.writer import open_run

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():  # test_browser_e2e has already failed or skipped the same way
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)


class Trap(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        Trap.hits.append(self.path)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def payload(trap: str) -> str:
    return (
        f"<script>window.__pwned='script'</script> <img src={trap}/img onerror=\"window.__pwned='img'\"> "
        f"![image]({trap}/md.png) [click](javascript:window.__pwned='link') <b>bold</b> "
        f'<iframe src="{trap}/frame"></iframe> :red[red] $x^2$'
    )


def test_hostile_run_text_shows_as_text_on_every_page_and_nothing_is_fetched(tmp_path):
    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Trap)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    trap = f"http://127.0.0.1:{port}"
    evil = payload(trap)
    runs_dir = tmp_path / "runs"
    run = open_run(runs_dir, "hostile", config={"task": "char_lm", "note": evil, "lr": 0.001})
    for step in range(1, 41):
        run.log(step, {rf.TRAIN_LOSS: 2.0 - step / 40, rf.LR: 1e-3})
        if step % 10 == 0:
            run.log_sample(step, text=f"{evil}\nstep {step}")
    run.event(
        "alert",
        evil,
        step=40,
        code="loss_spike",
        severity="critical",
        evidence={"note": evil},
        remedy=[{"set": {"lr": 0.0003}, "why": evil}],
    )
    run.finish(rf.FINISHED, evil)
    try:
        with dashboard(runs_dir) as url, chromium() as page:
            for _, title, path, _ in PAGE_SPECS:
                page.goto(f"{url}/{path}?run=hostile")
                page.get_by_text(title, exact=True).first.wait_for(timeout=60_000)
                page.wait_for_timeout(2_500)  # fragments and charts render
                assert page.evaluate("window.__pwned") is None, f"{title}: run text became script"
                assert page.locator(f"iframe[src^='{trap}']").count() == 0, title
                assert page.locator(f"img[src^='{trap}']").count() == 0, f"{title}: run text became an image"
                assert page.locator("a[href^='javascript:']").count() == 0, f"{title}: run text became a link"
            page.goto(f"{url}/samples?run=hostile")
            page.get_by_text("<script>window.__pwned", exact=False).first.wait_for(timeout=60_000)  # shown as text
        assert Trap.hits == [], f"the browser fetched what run text pointed at: {Trap.hits}"
    finally:
        server.shutdown()
