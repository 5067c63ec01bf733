"""Every dashboard page in AppTest against fixture run directories.

Process controls are exercised with trainer.runs.process.launch replaced by a recorder, so no real
trainer is started (and none can outlive pytest); the validation in front of it is real.
"""

import json
import math
import re
import time
from pathlib import Path

import pytest
from app_fixtures import ALERT, fake_checkpoint, make_run
from streamlit.testing.v1 import AppTest

from app import live_panel, run_watch, state, tiles
from trainer import cli
from trainer.rundir import run_format as rf
from trainer.rundir.summary import MAX_POINTS
from trainer.rundir.writer import open_run
from trainer.runs import process

ROOT = Path(__file__).resolve().parents[1]
# watchdog's harmless "watch added twice" warning for directories made and filled at once (the
# dashboard filters it too: app/run_watch.py); pytest resets warning filters for each test.
pytestmark = pytest.mark.filterwarnings("ignore:Callback with id .* already exists:RuntimeWarning")
HOME = str(ROOT / "app" / "Home.py")
FAKE_PID = 424242  # what the fake launch returns


@pytest.fixture
def launched(monkeypatch, runs_dir):
    """Record launches instead of starting trainers; a 'run' or 'fork' writes a small run dir."""
    calls = []

    def fake_launch(argv, runs_dir_, run_id, threads=None):
        calls.append([str(a) for a in argv])
        if argv[0] in ("run", "fork"):
            writer = open_run(runs_dir_, run_id, config={"task": "char_lm"})
            writer.log(1, {rf.TRAIN_LOSS: 4.2})
            writer.finish(rf.STOPPED)
        return FAKE_PID

    monkeypatch.setattr(process, "launch", fake_launch)
    monkeypatch.setattr(process, "check_data", lambda cfg: None)  # no torch/data load in page tests
    monkeypatch.setenv("TRAINER_RUNS_DIR", str(runs_dir))
    yield calls
    run_watch.stop_watcher()  # each test has its own runs directory: leave no observer behind


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def open_app(page: str | None = None, **state) -> AppTest:
    at = AppTest.from_file(HOME, default_timeout=30)
    for key, value in state.items():
        at.session_state[key] = value
    at.run()
    if page:
        at.switch_page(str(ROOT / "pages" / page)).run()
    assert not at.exception, at.exception
    return at


def unescaped(markdown: str) -> str:
    """What st.markdown shows for text escaped with app.markdown.escape."""
    return re.sub(r"\\(.)", r"\1", markdown)


def texts(at) -> str:
    parts = [t.value for t in at.text] + [m.value for m in at.markdown] + [c.value for c in at.caption]
    parts += [unescaped(str(e.value)) for kind in (at.error, at.warning, at.info, at.success, at.toast) for e in kind]
    return "\n".join(parts)


# --- Runs (home) ---------------------------------------------------------------------------------


def test_empty_state_button_starts_the_shakespeare_default_and_opens_live(launched, runs_dir):
    at = open_app()
    assert "No runs yet" in [s.value for s in at.subheader]
    at.button(key="start_default").click().run()
    assert not at.exception
    assert launched and launched[0][0] == "run"
    assert launched[0][launched[0].index("--config") + 1].endswith("configs/shakespeare_char.yaml")
    assert [t.value for t in at.title] == ["Live"]
    run_id = launched[0][launched[0].index("--run-id") + 1]
    assert at.session_state["selected_runs"] == [run_id]


def test_runs_table_shows_state_step_and_alert_counts(launched, runs_dir):
    make_run(runs_dir, "alpha", alert=True)
    make_run(runs_dir, "beta", parent="alpha", state=rf.FAILED)
    at = open_app()
    shown = texts(at)
    assert "alpha" in shown and "60 / 100" in shown and "1 critical" in shown
    assert "forked from alpha" in shown
    assert "badge[finished]" in shown and "badge[failed]" in shown
    assert at.button(key="stop_alpha").disabled  # finished runs cannot be stopped
    assert not at.button(key="resume_alpha").disabled


def test_stop_button_writes_the_stop_file_of_a_live_run(launched, runs_dir):
    writer = make_run(runs_dir, "live-run", state=None)
    try:
        at = open_app()
        assert not at.button(key="stop_live-run").disabled
        assert at.button(key="resume_live-run").disabled  # a live run cannot be resumed
        at.button(key="stop_live-run").click().run()
        assert (runs_dir / "live-run" / rf.CONTROL_DIR / rf.STOP_FILE).is_file()
        assert "Asked live-run to stop" in texts(at)
    finally:
        writer.finish(rf.STOPPED)


def test_a_bad_stop_grace_is_said_on_the_runs_page_and_the_default_kept(launched, runs_dir, monkeypatch):
    monkeypatch.setenv("TRAINER_STOP_GRACE_S", "soon")
    writer = make_run(runs_dir, "live-run", state=None)  # a live run: its stop requests are watched
    try:
        at = open_app()
        assert any("TRAINER_STOP_GRACE_S='soon'" in e.value and "using 10 s" in e.value for e in at.error)
        at.button(key="stop_live-run").click().run()
        assert (runs_dir / "live-run" / rf.CONTROL_DIR / rf.STOP_FILE).is_file()  # Stop still works
    finally:
        writer.finish(rf.STOPPED)


def keys(at) -> set[str]:
    return {b.key for b in at.button if b.key}


def test_resume_button_launches_the_same_command_as_the_cli(launched, runs_dir):
    make_run(runs_dir, "paused", state=rf.STOPPED)
    at = open_app()
    at.button(key="resume_paused").click().run()
    assert launched == [["resume", "paused", "--runs-dir", str(runs_dir)]] or launched[0][:2] == ["resume", "paused"]
    assert "Resumed paused" in texts(at)


def test_a_refused_resume_says_why_and_the_message_outlives_the_tables_refreshes(launched, runs_dir, monkeypatch):
    """Tried as a new user: kill -9 a run before its first checkpoint, press Resume. The refusal was
    shown for one refresh of the table (under a second), so the button looked dead."""
    from app import runs_table

    make_run(runs_dir, "early", state=rf.STOPPED, checkpoint=False)
    at = open_app()
    at.button(key="resume_early").click().run()
    assert not launched and "has no checkpoint to resume from" in texts(at)
    at.run()  # the next refresh of the table
    assert "has no checkpoint to resume from" in texts(at)
    later = __import__("time").time() + runs_table.MESSAGE_S + 1
    monkeypatch.setattr(runs_table.time, "time", lambda: later)
    at.run()
    assert "has no checkpoint to resume from" not in texts(at) and "afresh_early" not in keys(at)


def test_a_resume_refused_for_want_of_a_checkpoint_offers_to_start_its_config_afresh(launched, runs_dir):
    # what the refusal tells a CLI user to type, one click away: a new run, the crashed one kept as it is
    make_run(runs_dir, "early", state=rf.STOPPED, checkpoint=False)
    make_run(runs_dir, "other", state=rf.STOPPED)
    at = open_app()
    at.button(key="resume_other").click().run()
    assert "afresh_other" not in keys(at)  # a resume that worked offers nothing more
    at.button(key="resume_early").click().run()
    at.button(key="afresh_early").click().run()
    run_argv = launched[-1]
    assert run_argv[0] == "run" and run_argv[run_argv.index("--config") + 1].endswith("early/config.yaml")
    assert run_argv[run_argv.index("--run-id") + 1] == "early-new" and not [a for a in run_argv if "=" in a]
    assert "Started early-new" in texts(at) and (runs_dir / "early" / rf.METRICS_FILE).is_file()


def test_fork_form_refuses_a_bad_change_then_starts_the_fork(launched, runs_dir):
    make_run(runs_dir, "base", state=rf.STOPPED)
    at = open_app()
    at.button(key="fork_base").click().run()
    assert at.text_input(key="fork_new_id").value == "base-fork"
    at.text_area(key="fork_sets_text").input("model.n_layer=8")
    at.button(key="FormSubmitter:fork_form-Start fork").click().run()
    assert "cannot change" in texts(at) and launched == []
    at.text_area(key="fork_sets_text").input("lr=3e-4")
    at.button(key="FormSubmitter:fork_form-Start fork").click().run()
    assert launched and launched[0][:4] == ["fork", "base", "--from", "last"]
    assert "--set" in launched[0] and "lr=3e-4" in launched[0]
    # a toast, which goes by itself: in the page's body it stayed until the next click, long after
    # the fork it announced had finished (the table and Live refresh without the page)
    assert [unescaped(t.value) for t in at.toast] == [f"Started fork base-fork of base (pid {FAKE_PID})."]
    assert not any("Started fork" in unescaped(str(e.value)) for e in at.success)


def test_new_run_form_shows_the_error_next_to_the_field_and_starts_nothing(launched, runs_dir):
    at = open_app()
    at.text_input(key="new_shakespeare_char_lr").input("-1")
    at.text_input(key="new_shakespeare_char_model.n_head").input("4")
    at.button(key="FormSubmitter:new_run_form-Start run").click().run()
    errors = [unescaped(e.value) for e in at.error]
    assert any(e.startswith("lr: -1") and "must be > 0" in e for e in errors)
    assert launched == [] and list(runs_dir.iterdir()) == []


def test_new_run_form_starts_a_run_with_only_the_changed_fields(launched, runs_dir):
    at = open_app()
    at.text_input(key="new_shakespeare_char_max_steps").input("500")
    at.text_input(key="new_run_id").input("tiny")
    at.button(key="FormSubmitter:new_run_form-Start run").click().run()
    assert launched and launched[0][launched[0].index("--run-id") + 1] == "tiny"
    assert [a for a in launched[0] if "=" in a] == ["max_steps=500"]


# --- Live ------------------------------------------------------------------------------------------


def test_live_page_draws_charts_tiles_and_the_alert_banner(launched, runs_dir):
    make_run(runs_dir, "watched", alert=True)
    at = open_app("live.py", selected_runs=["watched"])
    assert len(at.get("vega_lite_chart")) >= 6
    (block,) = [h.proto.body for h in at.get("html") if "live-tiles" in h.proto.body]
    assert f'>train loss</div><div style="{tiles.VALUE}">{4.0 * math.exp(-2) + 1.0:.4g}</div>' in block
    banner = unescaped(at.error[0].value)
    assert "CRITICAL" in banner and "loss = 12.5" in banner and "set lr=0.0003 (fork): a smaller step" in banner
    at.button(key="remedy_watched_loss_spike").click().run()
    assert at.text_area(key="fork_sets_text").value == "lr=0.0003"


def test_live_page_opens_the_most_severe_alert_and_folds_the_others_under_their_names(launched, runs_dir):
    # three warnings and a critical: the critical open above the charts, the rest one line that names them
    run = _run_with_kinded_alerts(runs_dir, state=None)
    run.event("alert", "loss 40", step=70, code="loss_spike", severity="critical", evidence={}, remedy=[])
    run.finish(rf.STOPPED)
    at = open_app("live.py", selected_runs=["kinds"])
    (live,) = [e for e in at.expander if "more alerts" in e.label]
    assert unescaped(live.label) == "2 more alerts: token_collapse (warning), slowdown (warning)"
    assert [unescaped(e.value).split(":")[0] for e in at.error] == ["**CRITICAL** · loss_spike at step 70"]
    assert len(at.warning) == 2  # folded, not gone: still in the page, with their buttons
    assert "1 more alert kind: see the Diagnosis page." in [c.value for c in at.caption]
    assert at.button(key="remedy_kinds_token_collapse").label
    diagnosis = open_app("diagnosis.py", selected_runs=["kinds"])  # the page for alerts folds none
    assert not [e for e in diagnosis.expander if "more alerts" in e.label] and len(diagnosis.warning) == 3


def test_live_page_maps_one_runs_gradients_per_parameter_behind_a_toggle(launched, runs_dir):
    # what run.watch(model) logs: a W&B user expects to see it, and dead_parameters names rows of it
    run = open_run(runs_dir, "probed", config={"max_steps": 100})
    for step in range(10, 101, 10):
        run.log(step, {rf.TRAIN_LOSS: 2.0})
        run.log_grads(step, {"w1": 0.3, "dead.bias": 0.0}, {"w1": 1e-3, "dead.bias": 0.0})
    run.finish()
    at = open_app("live.py", selected_runs=["probed"])
    toggle = at.toggle(key="live_grad_maps")
    assert toggle.label == "Gradients per parameter (2 parameters, 10 probes)" and not toggle.value
    charts_before = len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart"))
    toggle.set_value(True).run()
    assert not at.exception
    captions = [c.value for c in at.caption]
    assert "gradient norm per parameter · 10 probes · newest step 100" in captions
    assert "exactly 0 at the newest probe (red): dead.bias" in captions
    assert len(at.get("arrow_vega_lite_chart")) + len(at.get("vega_lite_chart")) == charts_before + 2


def test_live_page_draws_a_chart_for_each_charts_entry_a_run_has_logged(launched, runs_dir):
    run = open_run(runs_dir, "ramp", config={"task": "discrete_diffusion"})
    for step in range(1, 31):
        run.log(step, {rf.TRAIN_LOSS: 2.0 + step / 30, rf.CURRICULUM_DIFFICULTY: min(1.0, 0.2 + step / 20)})
    run.finish()
    at = open_app("live.py", selected_runs=["ramp"])
    captions = [c.value for c in at.caption]
    assert any(c.startswith("Curriculum difficulty · 30 points") for c in captions), captions
    assert not any(c.startswith("Tokens per second") for c in captions)  # not logged: not drawn


def test_live_page_overlays_several_runs_and_survives_a_deleted_one(launched, runs_dir):
    import shutil

    make_run(runs_dir, "one")
    make_run(runs_dir, "two")
    at = open_app("live.py", selected_runs=["one", "two"])
    assert at.multiselect(key="live_runs").value == ["one", "two"]
    before = state.watcher().listing_token()
    shutil.rmtree(runs_dir / "two")
    wait_until(lambda: state.watcher().listing_token() != before)  # the file event has arrived
    at.run()
    assert not at.exception
    assert at.multiselect(key="live_runs").value == ["one"]


def test_live_page_reads_a_half_written_line_without_failing(launched, runs_dir):
    make_run(runs_dir, "torn")
    with open(runs_dir / "torn" / rf.METRICS_FILE, "a") as f:
        f.write('{"step": 61, "train/lo')
    at = open_app("live.py", selected_runs=["torn"])
    assert not at.exception and len(at.get("vega_lite_chart")) >= 6


def test_live_page_draws_a_long_run_from_its_cache_without_holding_its_rows(launched, runs_dir):
    make_run(runs_dir, "long", steps=1)
    rows = 200_000
    lines = (f'{{"step":{s},"time":{1e9 + s},"train/loss":{1 + 1 / s},"lr":0.001}}\n' for s in range(2, rows + 2))
    with open(runs_dir / "long" / rf.METRICS_FILE, "a") as f:
        f.write("".join(lines))
    at = open_app("live.py", selected_runs=["long"])
    loss = next(c.value for c in at.caption if c.value.startswith("Loss · "))
    points = int(loss.split(" · ")[1].split()[0])
    assert points <= MAX_POINTS + 2 and loss.endswith(f"step {rows + 1}")
    assert (runs_dir / "long" / rf.METRICS_CACHE_DIR / rf.METRICS_CACHE_META).is_file()
    snapshot = state.run_view("long")
    assert "metrics" not in snapshot.__dict__  # the run's rows as a frame were never built
    at.selectbox(key="live_last_steps").set_value(1_000).run()  # zoomed in: the newest rows, one point each
    loss = next(c.value for c in at.caption if c.value.startswith("Loss · "))
    assert loss.startswith("Loss · 1000 points") and loss.endswith(f"step {rows + 1}")


def test_live_page_refreshes_every_second_only_while_a_run_it_shows_trains(launched, runs_dir):
    training = make_run(runs_dir, "training", state=None)
    make_run(runs_dir, "ended")
    open_app("live.py", selected_runs=["ended", "training"])
    assert live_panel.refresh_every(["ended", "training"]) == live_panel.REFRESH_LIVE_S
    assert live_panel.refresh_every(["ended"]) == live_panel.REFRESH_ENDED_S > live_panel.REFRESH_LIVE_S
    training.finish(rf.STOPPED)
    wait_until(lambda: live_panel.refresh_every(["ended", "training"]) == live_panel.REFRESH_ENDED_S)


def test_live_page_with_log_scale_and_wall_time_axis(launched, runs_dir):
    make_run(runs_dir, "axes")
    at = open_app("live.py", selected_runs=["axes"])
    at.toggle(key="live_log").set_value(True).run()
    at.radio(key="live_x").set_value("time").run()
    assert not at.exception and len(at.get("vega_lite_chart")) >= 6


# --- Samples, Config, Diagnosis, System, Compare ----------------------------------------------------


def test_samples_page_shows_text_as_plain_text_with_stats_and_side_by_side(launched, runs_dir):
    make_run(runs_dir, "talker")
    at = open_app("samples.py", selected_runs=["talker"])
    plain = [t.value for t in at.text]
    assert any(v.startswith("step 60: ROMEO:") for v in plain)
    assert [s.value for s in at.subheader][:1] == ["step 60"]
    assert at.selectbox(key="samples_left").value == 20 and at.selectbox(key="samples_right").value == 60
    stats = at.dataframe[0].value
    assert {"entropy_bits", "punctuation_share", "distinct_chars"} <= set(stats.columns)


def test_samples_page_plots_numeric_predictions_against_targets(launched, runs_dir):
    make_run(runs_dir, "numbers", samples="numeric")
    at = open_app("samples.py", selected_runs=["numbers"])
    assert not at.exception and len(at.get("vega_lite_chart")) >= 1


def test_config_page_shows_config_diff_and_refuses_shape_change_on_resume(launched, runs_dir):
    make_run(runs_dir, "parent", state=rf.STOPPED)
    make_run(runs_dir, "child", parent="parent", state=rf.STOPPED, config={"lr": 3e-4})
    at = open_app("config.py", selected_runs=["child"])
    assert "lr: 0.0003" in at.code[0].value
    diff = at.dataframe[0].value
    assert diff["key"].tolist() == ["lr"]
    at.text_area(key="config_sets").input("model.n_embd=256")
    at.button(key="FormSubmitter:config_edit-Resume with changes").click().run()
    assert any("model.n_embd: cannot change" in unescaped(e.value) for e in at.error) and launched == []
    at.text_area(key="config_sets").input("max_steps=400")
    at.button(key="FormSubmitter:config_edit-Resume with changes").click().run()
    assert launched and launched[0][:2] == ["resume", "child"] and "max_steps=400" in launched[0]


def test_diagnosis_page_renders_the_report_and_alerts(launched, runs_dir):
    make_run(runs_dir, "sick", alert=True)
    at = open_app("diagnosis.py", selected_runs=["sick"])
    assert ALERT["message"] in unescaped(at.error[0].value)
    assert "Full report" in [s.value for s in at.subheader]
    assert at.markdown[-1].value.strip()
    assert "every 20 ms" in " ".join(c.value for c in at.caption)  # why the alerts and the report can differ


KINDED = {
    "dead_parameters": [{"kind": "code", "set": {}, "why": "look in forward() for where the branch goes"}],
    "slowdown": [{"kind": "none", "set": {}, "why": "another job took the cores"}],
    "token_collapse": [
        {"kind": "config", "start": "new", "set": {"weight_decay": 0.01}, "why": "decay removes 3% per step"},
        {"kind": "config", "start": "fork", "set": {"weight_decay": 0.01}, "why": "the same as a fork"},
    ],
}


def _run_with_kinded_alerts(runs_dir, state=rf.STOPPED):
    run = make_run(runs_dir, "kinds", state=None)
    for code, remedy in KINDED.items():
        run.event("alert", f"{code} fired", step=60, code=code, severity="warning", evidence={}, remedy=remedy)
    if state is not None:
        run.finish(state)
    return run


@pytest.mark.parametrize("page", ["diagnosis.py", "live.py"])
def test_only_config_remedies_get_a_button_and_a_new_run_remedy_starts_afresh(launched, runs_dir, page):
    _run_with_kinded_alerts(runs_dir)
    at = open_app(page, selected_runs=["kinds"])
    keys = {b.key for b in at.button if b.key and b.key.startswith("remedy_")}
    assert keys == {"remedy_kinds_token_collapse", "remedy_kinds_token_collapse_1"}  # none for code / none
    shown = texts(at)
    assert "code change: look in forward()" in unescaped(shown) and "no action: another job" in unescaped(shown)
    new, fork = at.button(key="remedy_kinds_token_collapse"), at.button(key="remedy_kinds_token_collapse_1")
    assert unescaped(new.label).startswith("New run with weight_decay=0.01") and fork.label.startswith("Fork with")
    new.click().run()
    run_argv = launched[0]
    assert run_argv[0] == "run" and run_argv[run_argv.index("--config") + 1].endswith("kinds/config.yaml")
    assert "weight_decay=0.01" in run_argv and run_argv[run_argv.index("--run-id") + 1] == "kinds-new"


@pytest.mark.parametrize("page", ["diagnosis.py", "live.py"])
def test_a_script_runs_remedy_buttons_are_disabled_with_the_reason(launched, runs_dir, page):
    _run_with_kinded_alerts(runs_dir)
    status_path = runs_dir / "kinds" / rf.STATUS_FILE  # as trainer.init writes it: our trainer cannot restart it
    status_path.write_text(json.dumps({**json.loads(status_path.read_text()), rf.STATUS_WRITER: rf.WRITER_API}))
    at = open_app(page, selected_runs=["kinds"])
    buttons = [at.button(key="remedy_kinds_token_collapse"), at.button(key="remedy_kinds_token_collapse_1")]
    if page == "diagnosis.py":
        buttons.append(at.button(key="try_remedies"))  # trials rerun our trainer's runs only
    assert all(b.disabled and "trainer.init" in b.help for b in buttons)  # AppTest, like a browser, cannot click


def test_try_the_remedies_refuses_a_healthy_run_in_one_line(launched, runs_dir):
    make_run(runs_dir, "fine", config={"schedule": "constant", "warmup_steps": 0})  # nothing to remedy
    at = open_app("diagnosis.py", selected_runs=["fine"])
    at.button(key="try_remedies").click().run()
    assert [e.value for e in at.error] == ["run 'fine' has no warning or critical alert: there is nothing to remedy"]
    assert launched == []


def test_try_the_remedies_starts_the_trials_and_compare_shows_them_with_verdicts(launched, runs_dir, monkeypatch):
    from trainer.runs import trials

    make_run(runs_dir, "sick", config={"max_steps": 60})
    fake_checkpoint(runs_dir / "sick" / rf.CHECKPOINT_DIR / rf.CKPT_BEST)
    remedy = [
        {"kind": "config", "start": "new", "set": {"weight_decay": 0.01}, "why": "decay removes 3% per step"},
        {"kind": "code", "set": {}, "why": "look in forward()"},
    ]
    alert = {"code": "token_collapse", "severity": "critical", "step": 40, "message": "m", "remedy": remedy}
    real = trials.diagnose
    monkeypatch.setattr(trials, "diagnose", lambda p: {"alerts": [alert]} if p.name == "sick" else real(p))
    at = open_app("diagnosis.py", selected_runs=["sick"])
    at.button(key="try_remedies").click().run()
    assert [a[0] for a in launched] == ["run", "run"]  # the control and the one config remedy, both new runs
    assert "Started 2 trials of token_collapse" in texts(at)
    table = at.dataframe[0].value
    assert table["run"].tolist() == ["sick-try-control", "sick-try-r1"]
    assert table["change"].tolist() == ["(none)", "weight_decay=0.01"]
    at = open_app("compare.py", compare_trials="sick-try")
    assert at.dataframe[0].value["role"].tolist() == ["control", "remedy"]
    assert len(at.get("vega_lite_chart")) >= 1  # the trial runs' train/loss side by side


def test_system_page_lists_a_live_trainer_process_and_machine_totals(launched, runs_dir):
    writer = make_run(runs_dir, "busy", state=None)
    reason = "2 physical cores, 0.1 busy with other work, 1 run of ours"
    writer.set_status(threads=2, threads_reason=reason, device="cpu")  # what our trainer records
    try:
        at = open_app("system.py")
        assert {m.label for m in at.metric} >= {"CPU", "Memory"}
        procs = at.dataframe[0].value
        assert procs["run"].tolist() == ["busy"] and procs["os threads"].iloc[0] >= 1
        assert (procs["torch threads"].iloc[0], procs["device"].iloc[0]) == (2, "cpu")
        assert procs["threads from"].iloc[0] == reason
    finally:
        writer.finish(rf.STOPPED)


def test_config_page_offers_no_resume_or_fork_for_an_imported_log(launched, runs_dir):
    csv = runs_dir.parent / "history.csv"
    csv.write_text("step,loss\n1,2.0\n2,1.9\n")
    assert cli.main(["import", "csv", str(csv), "--run-id", "imported", "--runs-dir", str(runs_dir)]) == 0
    at = open_app("config.py", selected_runs=["imported"])
    assert "imported_from" in at.code[0].value  # its config is shown
    assert any("no checkpoint of ours" in c.value for c in at.caption) and not at.text_area
    assert launched == []


def test_compare_page_overlays_runs_lists_config_differences_and_exports_csv(launched, runs_dir):
    make_run(runs_dir, "x1", config={"lr": 1e-3})
    make_run(runs_dir, "x2", config={"lr": 3e-4})
    at = open_app("compare.py", selected_runs=["x1", "x2"])
    assert len(at.get("vega_lite_chart")) == 2  # train/loss and val/loss
    diff = at.dataframe[0].value
    assert diff.index.tolist() == ["lr"]
    assert at.get("download_button")
    assert not any('"log"' in c.proto.spec for c in at.get("vega_lite_chart"))  # the scale's type
    at.toggle(key="compare_log").set_value(True).run()
    assert all('"log"' in c.proto.spec for c in at.get("vega_lite_chart"))


@pytest.mark.parametrize("page", ["live.py", "samples.py", "config.py", "diagnosis.py", "compare.py", "system.py"])
def test_pages_without_runs_point_to_the_runs_page(launched, runs_dir, page):
    at = open_app(page)
    assert not at.exception
    if page != "system.py":
        assert "No runs yet" in texts(at)


def test_live_link_from_the_runs_table_selects_its_run(launched, runs_dir):
    make_run(runs_dir, "first")
    make_run(runs_dir, "second")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.query_params["run"] = "second"
    at.session_state["selected_runs"] = ["first"]
    at.run()
    at.switch_page(str(ROOT / "pages" / "live.py")).run()
    assert not at.exception and at.multiselect(key="live_runs").value == ["second"]


def test_live_link_with_an_unknown_run_id_is_ignored(launched, runs_dir):
    make_run(runs_dir, "only")
    at = AppTest.from_file(HOME, default_timeout=30)
    at.query_params["run"] = "../../etc"
    at.run()
    at.switch_page(str(ROOT / "pages" / "live.py")).run()
    assert not at.exception and at.multiselect(key="live_runs").value == ["only"]
