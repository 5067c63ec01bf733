"""The whole run lifecycle in a real browser, with the Runs page open throughout (issue 16):
start from the form, Stop, wait past every grace period, Resume, Stop, Fork with a change; then the
same with the CLI while the page watches. A stop request must never reach a later process.

    REQUIRE_BROWSER=1 python -m pytest -m browser tests/test_browser_lifecycle.py
"""

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from test_browser_e2e import TINY, WAIT_MS

from app.harness import CHROMIUM, ROOT, chromium, dashboard, stop_trainers
from trainer import runs
from trainer.rundir import run_format as rf
from trainer.rundir import stop_request

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():  # test_browser_e2e has already failed or skipped the same way
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)

# The dashboard's grace before SIGTERM, shortened through its environment ($TRAINER_STOP_GRACE_S,
# 10 s by default) so that waiting past it twice costs this test 14 s, not 26.
GRACE_S = 4
PAST_GRACE_S = GRACE_S + 3


def status(run_dir: Path) -> dict:
    return runs.read_status(run_dir) or {}


def wait_for(predicate, what: str, timeout_s: float = WAIT_MS / 1000) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def row_shows(page, run_id: str, state: str) -> None:
    page.locator(f".st-key-row_{run_id}").get_by_text(state, exact=True).wait_for(timeout=WAIT_MS)


def trains_past(page, run_dir: Path, step: int) -> None:
    """The row says running and the trainer logs steps beyond `step` (its checkpoint)."""
    row_shows(page, run_dir.name, rf.RUNNING)
    wait_for(lambda: status(run_dir).get("step", 0) > step + 2, f"{run_dir.name} to train past step {step}")
    row_shows(page, run_dir.name, rf.RUNNING)  # still running: nothing stopped it


def stopped_by_request(page, run_dir: Path) -> int:
    row_shows(page, run_dir.name, rf.STOPPED)
    final = status(run_dir)
    assert final["state"] == rf.STOPPED and "control/stop file" in final["message"], final
    assert (run_dir / rf.CHECKPOINT_DIR / rf.CKPT_LAST).is_file()
    assert stop_request.read(run_dir) is None, "the honoured stop request must be consumed"
    return final["step"]


def cli(runs_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "trainer", *args, "--runs-dir", str(runs_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_start_stop_resume_stop_fork_with_the_buttons_then_the_cli(tmp_path, monkeypatch):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    for key, value in TINY.items():  # the CLI's trainers get the same small run as the page's
        monkeypatch.setenv(key, value)
    try:
        with dashboard(runs_dir, {**TINY, runs.STOP_GRACE_ENV: str(GRACE_S)}) as url, chromium() as page:
            page.goto(url)
            # 1) start from the Home page's form, with a run id of our choosing
            run_id_field = page.locator(".st-key-new_run_id input")
            run_id_field.wait_for(state="visible", timeout=WAIT_MS)  # the form is open while there are no runs
            run_id_field.fill("life", timeout=WAIT_MS)
            page.get_by_role("button", name="Start run").click(timeout=WAIT_MS)
            life = runs_dir / "life"
            trains_past(page, life, 0)

            # 2) Stop with the button; then leave the page open past every grace period
            page.locator(".st-key-stop_life button").click(timeout=WAIT_MS)
            stopped_at = stopped_by_request(page, life)
            first_pid = status(life)["pid"]
            time.sleep(PAST_GRACE_S)

            # 3) Resume with the button: it must train past its checkpoint, not be killed while starting
            page.locator(".st-key-resume_life button").click(timeout=WAIT_MS)
            trains_past(page, life, stopped_at)
            assert status(life)["pid"] != first_pid
            time.sleep(PAST_GRACE_S)  # and stay alive with the page refreshing over it
            row_shows(page, "life", rf.RUNNING)

            # 4) Stop again, then Fork with a changed setting
            page.locator(".st-key-stop_life button").click(timeout=WAIT_MS)
            second_stop = stopped_by_request(page, life)
            assert second_stop > stopped_at
            page.locator(".st-key-fork_life button").click(timeout=WAIT_MS)
            page.locator(".st-key-fork_sets_text textarea").fill("lr=0.0005", timeout=WAIT_MS)
            page.get_by_role("button", name="Start fork").click(timeout=WAIT_MS)
            fork = runs_dir / "life-fork"
            trains_past(page, fork, second_stop)
            config = yaml.safe_load((fork / rf.CONFIG_FILE).read_text())
            assert config["lr"] == 0.0005 and status(fork)["parent"] == "life"

            # 5) the same lifecycle through the CLI while the page stays open on the Runs page (the
            # waits past the grace period are step 2's; a request aged past it under a refreshing
            # page, without the wait: tests/test_cli_lifecycle.py)
            cli(runs_dir, "stop", "life-fork", "--wait", "--grace", "60")
            fork_stop = stopped_by_request(page, fork)
            cli(runs_dir, "resume", "life-fork", "--background")
            trains_past(page, fork, fork_stop)
            row_shows(page, "life-fork", rf.RUNNING)
            cli(runs_dir, "stop", "life-fork", "--wait", "--grace", "60")
            stopped_by_request(page, fork)
            cli(
                runs_dir,
                "fork",
                "life-fork",
                "--from",
                "last",
                "--run-id",
                "cli-fork",
                "--set",
                "lr=0.0002",
                "--background",
            )
            cli_fork = runs_dir / "cli-fork"
            trains_past(page, cli_fork, 0)
            assert yaml.safe_load((cli_fork / rf.CONFIG_FILE).read_text())["lr"] == 0.0002
            assert status(cli_fork)["parent"] == "life-fork"
            cli(runs_dir, "stop", "cli-fork")  # no --wait: the page sees it through
            stopped_by_request(page, cli_fork)
    finally:
        stop_trainers(runs_dir)
