"""The dashboard's file watcher: events (or stat polling) decide whether a run is read at all."""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from app_fixtures import make_run
from streamlit.testing.v1 import AppTest

from app import run_watch, state
from app.run_list import RunList
from app.run_watch import TABLE_FILES, RunsWatcher
from trainer.rundir import run_format as rf
from trainer.rundir.reader import MIN_REFRESH_S, RunReader

ROOT = Path(__file__).resolve().parents[1]
# watchdog's harmless "watch added twice" warning for directories made and filled at once (the
# dashboard filters it too: app/run_watch.py); pytest resets warning filters for each test.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id .* already exists:RuntimeWarning")

# sys.addaudithook cannot be removed: the hook records only while a test has a list in place.
_opened: list[str] | None = None


def _audit(event, args):
    if _opened is not None and event == "open" and isinstance(args[0], (str, bytes, os.PathLike)):
        _opened.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def files_opened_during(action) -> list[str]:
    global _opened
    _opened = []
    try:
        action()
        return _opened
    finally:
        _opened = None


def wait_for_change(watcher: RunsWatcher, run_id: str, before: tuple, timeout: float = 5.0) -> tuple:
    deadline = time.monotonic() + timeout
    while (token := watcher.token(run_id)) == before:
        assert time.monotonic() < deadline, "no change seen by the watcher"
        time.sleep(0.01)
    return token


def settle(watcher: RunsWatcher, run_ids: list[str], quiet: float = 0.3, timeout: float = 10.0) -> None:
    """Wait until the events of the fixtures' own writes are delivered: no token moves for `quiet`
    seconds (on a loaded machine inotify events can trail the writes by more than a fixed sleep)."""
    deadline = time.monotonic() + timeout
    tokens = [watcher.token(r) for r in run_ids]
    still_since = time.monotonic()
    while time.monotonic() - still_since < quiet:
        assert time.monotonic() < deadline, "the watcher's tokens never settled"
        time.sleep(0.02)
        now = [watcher.token(r) for r in run_ids]
        if now != tokens:
            tokens, still_since = now, time.monotonic()


def cannot_start(runs_dir, handler):
    raise OSError(28, "inotify watch limit reached")


def append_row(run_dir: Path, step: int) -> None:
    with open(run_dir / rf.METRICS_FILE, "a") as f:
        f.write(json.dumps({"step": step, "time": time.time(), rf.TRAIN_LOSS: 1.0}) + "\n")


@pytest.fixture(params=["events", "polling"])
def watcher(request, runs_dir):
    watcher = RunsWatcher(runs_dir, start_observer=None if request.param == "polling" else run_watch._start_observer)
    assert watcher.mode == request.param
    yield watcher
    watcher.stop()


def test_token_changes_when_a_run_file_is_appended_to_but_not_when_it_is_read(watcher, runs_dir):
    make_run(runs_dir, "alpha", steps=5)
    settle(watcher, ["alpha"])  # events of the fixture's own writes are delivered by now
    before = watcher.token("alpha")
    (runs_dir / "alpha" / rf.METRICS_FILE).read_bytes()
    time.sleep(0.1)
    assert watcher.token("alpha") == before  # our own reads are not changes
    append_row(runs_dir / "alpha", 6)
    assert wait_for_change(watcher, "alpha", before) != before


def test_a_refresh_with_nothing_changed_opens_no_file(watcher, runs_dir):
    make_run(runs_dir, "alpha", steps=5)
    settle(watcher, ["alpha"])
    reader = RunReader(runs_dir / "alpha")
    first = reader.snapshot(watcher.token("alpha"))
    reads = reader.reads

    again = []
    opened = files_opened_during(lambda: again.append(reader.snapshot(watcher.token("alpha"))))
    assert opened == [] and reader.reads == reads and again == [first] and again[0] is first

    before = watcher.token("alpha")
    append_row(runs_dir / "alpha", 6)
    token = wait_for_change(watcher, "alpha", before)
    time.sleep(MIN_REFRESH_S)
    view = reader.snapshot(token)
    assert reader.reads == reads + 1 and len(view.metrics) == len(first.metrics) + 1


def test_the_watcher_falls_back_to_stat_polling_when_events_cannot_start(runs_dir):
    watcher = RunsWatcher(runs_dir, start_observer=cannot_start)
    assert watcher.mode == "polling" and "inotify watch limit reached" in watcher.fallback_reason
    make_run(runs_dir, "alpha", steps=5)
    before = watcher.token("alpha")
    append_row(runs_dir / "alpha", 6)
    assert watcher.token("alpha") != before  # no thread needed: the stats changed


def test_events_start_once_the_runs_directory_exists(tmp_path, monkeypatch):
    monkeypatch.setattr(run_watch, "RETRY_S", 0.0)
    watcher = RunsWatcher(tmp_path / "runs")
    try:
        assert watcher.mode == "polling" and "does not exist" in watcher.fallback_reason
        (tmp_path / "runs").mkdir()
        watcher.listing_token()
        assert watcher.mode == "events"
    finally:
        watcher.stop()


def test_one_observer_per_process_and_none_left_after_stop(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = run_watch.watcher_for(tmp_path / "a")
    assert run_watch.watcher_for(tmp_path / "a") is first
    observer = first._observer
    second = run_watch.watcher_for(tmp_path / "b")
    assert second is not first and not observer.is_alive() and second.mode == "events"
    run_watch.stop_watcher()
    assert second.mode == "polling" and not any(t.is_alive() for t in _observer_threads())


def _observer_threads():
    from watchdog.observers.api import BaseObserver

    return [t for t in threading.enumerate() if isinstance(t, BaseObserver)]


def test_runs_table_rereads_only_the_runs_whose_files_changed(watcher, runs_dir):
    make_run(runs_dir, "alpha", steps=5)
    make_run(runs_dir, "beta", steps=5)
    settle(watcher, ["alpha", "beta"])
    run_list = RunList(runs_dir)
    assert [i.run_id for i in run_list.infos(watcher)] == ["beta", "alpha"]
    rebuilt = run_list.rebuilt
    run_list.infos(watcher)
    assert run_list.rebuilt == rebuilt  # nothing changed: nothing read

    before = watcher.token("alpha")
    beta = watcher.token("beta", TABLE_FILES)
    status = json.loads((runs_dir / "alpha" / rf.STATUS_FILE).read_text())
    (runs_dir / "alpha" / rf.STATUS_FILE).write_text(json.dumps({**status, "step": 99}))
    wait_for_change(watcher, "alpha", before)
    infos = {i.run_id: i for i in run_list.infos(watcher)}
    assert infos["alpha"].step == 99
    # On a loaded machine an event of beta's own creation can still arrive after settle(): beta is
    # then re-read too, rightly. Otherwise only alpha is.
    beta_moved = watcher.token("beta", TABLE_FILES) != beta
    assert rebuilt + 1 <= run_list.rebuilt <= rebuilt + 1 + beta_moved


def test_a_live_run_turns_crashed_when_its_process_dies_without_any_file_change(watcher, runs_dir):
    writer = make_run(runs_dir, "alpha", steps=5, state=None)
    status_file = runs_dir / "alpha" / rf.STATUS_FILE
    run_list = RunList(runs_dir)
    try:
        assert run_list.infos(watcher)[0].state == rf.RUNNING  # its process: this test
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        status = {**json.loads(status_file.read_text()), "pid": child.pid}
        status["pid_create_time"] = psutil.Process(child.pid).create_time()
        before = watcher.token("alpha")
        status_file.write_text(json.dumps(status))
        wait_for_change(watcher, "alpha", before)
        assert run_list.infos(watcher)[0].state == rf.RUNNING
        child.kill()  # kill -9: no file changes
        child.wait()
        assert run_list.infos(watcher)[0].state == rf.CRASHED  # at once, not after the heartbeat goes stale
    finally:
        writer.finish(rf.STOPPED)


def test_a_remote_live_run_turns_crashed_when_its_heartbeat_goes_stale_without_any_file_change(watcher, runs_dir):
    writer = make_run(runs_dir, "alpha", steps=5, state=None)
    status_file = runs_dir / "alpha" / rf.STATUS_FILE
    # Written on another host: its pid cannot be checked here, only its heartbeat.
    status_file.write_text(json.dumps({**json.loads(status_file.read_text()), "host": "gpu-box-7"}))
    try:
        run_list = RunList(runs_dir)
        now = time.time()
        assert run_list.infos(watcher, now=now)[0].state == rf.RUNNING  # fresh heartbeat
        rebuilt = run_list.rebuilt
        later = now + rf.STALE_AFTER_SECONDS + 5
        assert run_list.infos(watcher, now=later)[0].state == rf.CRASHED
        assert run_list.rebuilt == rebuilt + 1
    finally:
        writer.finish(rf.STOPPED)


def test_apps_pointed_at_new_runs_directories_leave_one_observer_behind(tmp_path, monkeypatch):
    for name in ("one", "two", "three"):
        runs_dir = tmp_path / name
        runs_dir.mkdir()
        make_run(runs_dir, f"run-{name}", steps=5)
        monkeypatch.setenv("TRAINER_RUNS_DIR", str(runs_dir))
        at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=30).run()
        assert not at.exception, at.exception
        assert state.watcher().mode == "events"
        assert len([t for t in _observer_threads() if t.is_alive()]) == 1
    run_watch.stop_watcher()
    assert not any(t.is_alive() for t in _observer_threads())


def test_a_change_the_app_made_itself_shows_without_waiting_for_its_event(watcher, runs_dir):
    listing, token = watcher.listing_token(), watcher.token("new-run")
    watcher.note_change("new-run")
    assert watcher.listing_token() != listing and watcher.token("new-run") != token


def test_a_deleted_and_recreated_runs_directory_is_watched_again(tmp_path, monkeypatch):
    monkeypatch.setattr(run_watch, "RETRY_S", 0.0)
    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    watcher = RunsWatcher(runs_dir)
    try:
        runs_dir.rmdir()
        deadline = time.monotonic() + 5
        while watcher.mode == "events":  # the deletion event arrives
            assert time.monotonic() < deadline
            time.sleep(0.01)
        runs_dir.mkdir()
        make_run(runs_dir, "alpha", steps=3)
        assert watcher.mode == "events"  # started again on the recreated directory
        before = watcher.token("alpha")
        append_row(runs_dir / "alpha", 4)
        wait_for_change(watcher, "alpha", before)
    finally:
        watcher.stop()


def test_the_runs_table_reads_the_newest_runs_ahead_once(tmp_path, monkeypatch):
    from app import prefetch

    runs_dir = tmp_path / "runs"
    runs_dir.mkdir()
    for name in ("old", "mid", "new"):
        make_run(runs_dir, name, steps=5)
    monkeypatch.setenv("TRAINER_RUNS_DIR", str(runs_dir))
    ids = ["new", "mid", "old"]  # newest first, as the table lists them
    threads = prefetch.start(ids)
    assert [t.name for t in threads] == ["prefetch-new", "prefetch-mid"]
    for t in threads:
        t.join(10)
    for run_id in ("new", "mid"):
        reader = state.run_reader(os.path.abspath(runs_dir / run_id))
        assert reader.reads == 1
        assert state.run_view(run_id).metrics["step"].max() == 5  # the page finds it read
    assert prefetch.start(ids) == []  # once per process
    run_watch.stop_watcher()


def test_a_bad_or_missing_run_id_gives_a_snapshot_that_says_so(runs_dir, monkeypatch):
    monkeypatch.setenv("TRAINER_RUNS_DIR", str(runs_dir))
    try:
        bad = state.run_view("../etc")
        assert not bad.exists and "invalid run id" in bad.error and bad.metrics.empty
        missing = state.run_view("never-made")
        assert not missing.exists and "no longer exists" in missing.error
    finally:
        run_watch.stop_watcher()
