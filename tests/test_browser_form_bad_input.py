"""Bad input typed into the forms in Chromium (issue 12): the page shows the CLI's message as the
CLI prints it (markdown in a typed value stays literal), and the runs directory is unchanged.
tests/test_form_bad_input.py covers every case in AppTest; this one types three in a browser.

    REQUIRE_BROWSER=1 python -m pytest -m browser tests/test_browser_form_bad_input.py
"""

import shutil
from pathlib import Path

import pytest
from test_bad_input import snapshot
from test_browser_e2e import WAIT_MS
from test_form_bad_input import cli_error, world  # noqa: F401 - world is a fixture

from app.harness import CHROMIUM, chromium, dashboard, stop_trainers
from trainer.rundir import run_format as rf

pytestmark = pytest.mark.browser

if not Path(CHROMIUM).exists():  # test_browser_e2e has already failed or skipped the same way
    pytest.skip(f"{CHROMIUM} is missing", allow_module_level=True)


def shows(page, message: str, button: str | None = None) -> None:
    """The message is on the page as text, exactly (a markdown rendering would change it). button:
    the submit button pressed; pressed once more if nothing showed within 20 s (under a loaded
    suite a click can land while a rerun is being replaced, as a user's second click would)."""
    found = page.get_by_text(message, exact=True).first
    if button is not None:
        try:
            found.wait_for(timeout=20_000)
            return
        except Exception:  # playwright's TimeoutError
            page.get_by_role("button", name=button).click(timeout=WAIT_MS)
    found.wait_for(timeout=WAIT_MS)


def open_expander(page, label: str, inside: str) -> None:
    """Opens the expander `label` until the element `inside` it shows: clicked again if it did not
    within 20 s (under a loaded suite the first click can land on an expander that the page's first
    run is replacing, and the new one is drawn closed, as a user would see and click again)."""
    field = page.locator(inside)
    for _ in range(3):
        page.get_by_text(label, exact=True).click(timeout=WAIT_MS)
        try:
            field.wait_for(state="visible", timeout=20_000)
            return
        except Exception:  # playwright's TimeoutError
            continue
    field.wait_for(state="visible", timeout=WAIT_MS)


def test_typed_bad_input_shows_the_clis_message_as_text_and_writes_nothing(world, tmp_path, capsys):  # noqa: F811
    runs_dir = tmp_path / "runs"
    shutil.copytree(world, runs_dir)
    new_run = cli_error(["run", "--background", "--set", "lr=*1e-3*"], runs_dir, capsys)
    fork = cli_error(["fork", "done", "--run-id", "y", "--set", "model.n_embd=64"], runs_dir, capsys)
    before = snapshot(runs_dir)
    try:
        with dashboard(runs_dir) as url, chromium() as page:
            page.goto(url)
            # 1) the new-run form, with markdown in the typed value
            open_expander(page, "Start a new run", ".st-key-new_shakespeare_char_lr input")
            page.locator(".st-key-new_shakespeare_char_lr input").fill("*1e-3*", timeout=WAIT_MS)
            page.get_by_role("button", name="Start run").click(timeout=WAIT_MS)
            shows(page, new_run, "Start run")
            # 2) the fork form, with a change that alters parameter shapes
            page.locator(".st-key-fork_done button").click(timeout=WAIT_MS)
            page.locator(".st-key-fork_new_id input").fill("y", timeout=WAIT_MS)
            page.locator(".st-key-fork_sets_text textarea").fill("model.n_embd=64", timeout=WAIT_MS)
            page.get_by_role("button", name="Start fork").click(timeout=WAIT_MS)
            shows(page, fork)
            assert snapshot(runs_dir) == before
            # 3) a checkpoint picked in the fork form and deleted before Start is pressed
            page.locator(".st-key-fork_from").click(timeout=WAIT_MS)
            page.get_by_role("option", name="10", exact=True).click(timeout=WAIT_MS)
            page.locator(".st-key-fork_sets_text textarea").fill("", timeout=WAIT_MS)
            (runs_dir / "done" / rf.CHECKPOINT_DIR / rf.CKPT_STEP_PATTERN.format(step=10)).unlink()
            gone = cli_error(["fork", "done", "--from", "10", "--run-id", "y"], runs_dir, capsys)
            before = snapshot(runs_dir)
            page.get_by_role("button", name="Start fork").click(timeout=WAIT_MS)
            shows(page, gone)
        assert snapshot(runs_dir) == before
    finally:
        stop_trainers(runs_dir)
