"""The dashboard restarted while a run trains (issue 12): the server is killed (its whole process
group, as a crash or a closed terminal would), a new one starts on the same runs directory, and in
Chromium the run is still listed as running, Stop stops it with a checkpoint, and Resume trains it
past that checkpoint. Nothing of the old server's state is needed: the run directory is the truth.

    REQUIRE_BROWSER=1 python -m pytest -m browser tests/test_browser_restart.py
"""

from pathlib import Path

import psutil
import pytest
from test_browser_e2e import TINY, WAIT_MS
from test_browser_lifecycle import row_shows, status, stopped_by_request, trains_past, wait_for

from app.harness import CHROMIUM, chromium, dashboard, kill_dashboard, server_pid, stop_trainers
from trainer.rundir import run_format as rf

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():  # test_browser_e2e has already failed or skipped the same way
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)


def test_a_restarted_dashboard_finds_the_running_run_and_stop_and_resume_work(tmp_path):
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    run_dir = runs_dir / "survivor"
    try:
        with chromium() as page:
            with dashboard(runs_dir, TINY) as url:
                page.goto(url)
                page.locator(".st-key-new_run_id input").fill("survivor", timeout=WAIT_MS)
                page.get_by_role("button", name="Start run").click(timeout=WAIT_MS)
                trains_past(page, run_dir, 0)
                trainer_pid = status(run_dir)["pid"]
                assert psutil.Process(trainer_pid).parent().pid == server_pid(url)  # the server's own child
                kill_dashboard(url)
            # The trainer outlived its parent and goes on training with no dashboard at all.
            at_kill = status(run_dir)["step"]
            wait_for(lambda: status(run_dir)["step"] > at_kill + 5, "the orphaned trainer to go on training")
            assert status(run_dir)["state"] == rf.RUNNING and status(run_dir)["pid"] == trainer_pid

            with dashboard(runs_dir, TINY) as url:
                page.goto(url)
                row_shows(page, "survivor", rf.RUNNING)
                page.locator(".st-key-stop_survivor button").click(timeout=WAIT_MS)
                stopped_at = stopped_by_request(page, run_dir)
                wait_for(lambda: not psutil.pid_exists(trainer_pid) or _is_zombie(trainer_pid), "the trainer to exit")

                page.locator(".st-key-resume_survivor button").click(timeout=WAIT_MS)
                trains_past(page, run_dir, stopped_at)
                assert status(run_dir)["pid"] != trainer_pid
    finally:
        stop_trainers(runs_dir)


def _is_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
