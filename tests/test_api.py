"""trainer.init: a run directory from your own loop that our reader, CLI, doctor and dashboard
treat like ours (docs/logging-api.md)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from torch import nn

import trainer
from trainer import cli, runs
from trainer.doctor import diagnose
from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records
from trainer.rundir.reader import RunReader

ROOT = Path(__file__).resolve().parents[1]


def lines(run_dir: Path, name: str) -> list[dict]:
    return read_records(run_dir / name)


def alert_codes(run_dir: Path) -> list[str]:
    return [e["code"] for e in lines(run_dir, rf.EVENTS_FILE) if e["kind"] == "alert"]


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class WithUnusedLayer(nn.Module):
    """A regression net with a layer that is never on the forward path: its gradient is never set."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.unused = nn.Linear(4, 4)

    def forward(self, x):
        return self.net(x)


def train(run, steps: int, model=None, nan_from: int | None = None) -> None:
    torch.manual_seed(0)
    model = model or WithUnusedLayer()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for step in range(1, steps + 1):
        x = torch.randn(32, 4)
        y = x.sum(1, keepdim=True)
        pred = model(x)
        loss = nn.functional.mse_loss(pred, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        logged = torch.tensor(float("nan")) if nan_from is not None and step >= nan_from else loss
        run.log({rf.TRAIN_LOSS: logged, rf.LR: 0.05, "count": step}, step=step)
        run.variance(pred, y)


def test_run_directory_reads_like_ours_in_the_reader_and_the_cli(runs_dir, capsys):
    with trainer.init(run_id="mine", runs_dir=runs_dir, config={"lr": 0.05, "hidden": [16]}) as run:
        train(run, 5)
    run_dir = runs_dir / "mine"
    reader = RunReader(run_dir)
    reader.refresh()
    assert reader.status["state"] == rf.FINISHED and reader.status[rf.STATUS_WRITER] == rf.WRITER_API
    assert reader.config == {"lr": 0.05, "hidden": [16]}  # as given, not our schema
    train_rows = reader.metrics.dropna(subset=[rf.TRAIN_LOSS])
    assert train_rows["step"].tolist() == [1, 2, 3, 4, 5]
    assert train_rows[rf.TRAIN_LOSS].between(0, 100).all()
    assert [e["kind"] for e in reader.events.to_dict("records")] == ["start", "finish"]
    assert cli.main(["list", "--runs-dir", str(runs_dir)]) == 0
    assert "mine" in capsys.readouterr().out
    assert cli.main(["diagnose", str(run_dir), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["run"]["state"] == rf.FINISHED
    assert runs.list_runs(runs_dir)[0].writer == rf.WRITER_API


def test_the_best_val_loss_logged_is_the_runs_tables_best_val_loss(runs_dir):
    def best() -> float | None:
        return runs.list_runs(runs_dir)[0].best_val_loss

    with trainer.init(run_id="val", runs_dir=runs_dir) as run:
        run.log({rf.TRAIN_LOSS: 3.0}, step=1)
        run.flush()
        assert best() is None  # no eval yet
        run.log({rf.VAL_LOSS: torch.tensor(2.0)}, step=10)  # a tensor, read at the flush
        run.log({rf.VAL_LOSS: float("nan")}, step=20)  # not a best, nor the end of one
        run.log({rf.VAL_LOSS: 1.5}, step=30)
        run.flush()
        assert best() == 1.5
        run.log({rf.VAL_LOSS: 1.7}, step=40)
    assert best() == 1.5 and runs.read_status(runs_dir / "val")[rf.STATUS_BEST_VAL_LOSS] == 1.5


def test_tensors_logged_without_item_arrive_as_numbers_and_nan_as_null(runs_dir):
    loss = torch.tensor(2.5, requires_grad=True) * 1.0  # part of a graph, as a loss is
    with trainer.init(run_id="values", runs_dir=runs_dir) as run:
        run.log(
            {"a": loss, "b": torch.tensor(3), "c": float("nan"), "d": torch.tensor(float("inf")), "e": 7},
            step=4,
        )
        run.log({"one": torch.tensor([1.5]), "flag": torch.tensor(True)}, step=5)  # one element: one number
        with pytest.raises(TypeError, match="'vec' is a tensor of shape \\(3,\\)"):
            run.log({"vec": torch.ones(3)}, step=6)
        with pytest.raises(TypeError, match="'none' is a tensor of shape \\(0,\\)"):
            run.log({"ok": 1.0, "none": torch.ones(0)}, step=6)
    text = (runs_dir / "values" / rf.METRICS_FILE).read_text()
    row = json.loads(text.splitlines()[0])
    assert row["step"] == 4 and row["a"] == 2.5 and row["b"] == 3 and row["e"] == 7
    assert row["c"] is None and row["d"] is None and '"c":null' in text
    second = json.loads(text.splitlines()[1])
    assert (second["step"], second["one"], second["flag"]) == (5, 1.5, True)
    assert len(text.splitlines()) == 2  # the refused calls wrote nothing


def test_the_scripts_memory_and_cpu_and_other_processes_cores_are_written_about_once_a_second(runs_dir):
    # as our trainer writes them with each row: memory_growth and slowdown read them from a script's run too
    with trainer.init(run_id="sys", runs_dir=runs_dir) as run:
        for step in range(1, 121):
            run.log({rf.TRAIN_LOSS: 1.0, **({rf.RSS_MB: 5.0} if step == 60 else {})}, step=step)
            time.sleep(0.02)
    rows = [json.loads(line) for line in (runs_dir / "sys" / rf.METRICS_FILE).read_text().splitlines()]
    with_sys = [r for r in rows if rf.OTHER_CPU in r]
    assert 1 <= len(with_sys) <= len(rows) / 10, len(with_sys)  # about one a flush (~2.4 s of rows), not one a row
    for row in with_sys:
        assert row[rf.RSS_MB] > 10 or row["step"] == 60
        assert row[rf.CPU_PERCENT] >= 0 and row[rf.OTHER_CPU] >= 0 and row[rf.CPU_WAIT] >= 0
        assert rf.TRAIN_LOSS in row  # on a train row: where the doctor's slowdown reads them with its speed
    assert next(r for r in rows if r["step"] == 60)[rf.RSS_MB] == 5.0  # the script's own value is kept


def test_watch_writes_grads_and_a_parameter_without_gradient_is_dead_to_the_doctor(runs_dir):
    model = WithUnusedLayer()
    with trainer.init(run_id="dead", runs_dir=runs_dir) as run:
        run.watch(model, every=2)
        train(run, 10, model=model)
    grads = lines(runs_dir / "dead", rf.GRADS_FILE)
    assert [g["step"] for g in grads] == [2, 4, 6, 8, 10]
    assert all(g["norms"]["unused.weight"] == 0.0 and g["update_ratios"]["unused.weight"] == 0.0 for g in grads)
    assert all(g["norms"]["net.0.weight"] > 0 and g["update_ratios"]["net.0.weight"] > 0 for g in grads)
    # the mechanism evidence: weight norms, and SGD's lr with no decoupled decay (no fixed shrink)
    assert all(g[rf.WEIGHT_NORMS]["unused.weight"] > 0 and set(g[rf.WEIGHT_NORMS]) == set(g["norms"]) for g in grads)
    assert all(g[rf.PROBE_LR] == 0.05 and g[rf.DECAY_PER_STEP] == 0.0 for g in grads)
    assert all(rf.EMBEDDING_NORM not in g and rf.DECAYED_NORM not in g for g in grads)  # no table, no decay
    report = diagnose(runs_dir / "dead")
    dead = [a for a in report["alerts"] if a["code"] == "dead_parameters"]
    assert dead and dead[0]["evidence"]["dead"] == ["unused.bias", "unused.weight"]
    assert "dead_parameters" in alert_codes(runs_dir / "dead")  # the online doctor saw it too
    assert "lr_anomaly" not in [a["code"] for a in report["alerts"]]  # a script's config is not our schedule


def test_should_stop_after_a_stop_request_and_the_run_ends_stopped(runs_dir):
    run = trainer.init(run_id="stoppable", runs_dir=runs_dir)
    train(run, 3)
    assert not run.should_stop()
    runs.request_stop(runs_dir, "stoppable")  # what the dashboard's Stop and `trainer stop` do
    assert run.should_stop()
    run.finish()
    status = runs.read_status(runs_dir / "stoppable")
    assert status["state"] == rf.STOPPED and "stop requested" in status["message"]
    assert lines(runs_dir / "stoppable", rf.EVENTS_FILE)[-1]["kind"] == "stop"
    assert not (runs_dir / "stoppable" / rf.CONTROL_DIR / rf.STOP_FILE).exists()  # consumed


def test_init_on_a_torchrun_rank_other_than_0_opening_rank_0s_run_says_what_to_do(runs_dir, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with trainer.init(run_id="ddp", runs_dir=runs_dir) as run:  # rank 0 writes the run
        monkeypatch.setenv("RANK", "1")
        # every rank opening it: RunBusy's "pick another run id" pointed the wrong way
        with pytest.raises(RuntimeError, match=r"rank 1 of 2 .*taken.*call it on rank 0 only"):
            trainer.init(run_id="ddp", runs_dir=runs_dir)
        # a run id of its own per rank (a run per process, as a sweep launched by torchrun) is allowed
        with trainer.init(run_id="ddp-rank1", runs_dir=runs_dir) as other:
            train(other, 2)
        train(run, 2)
    assert runs.read_status(runs_dir / "ddp")["state"] == rf.FINISHED
    assert runs.read_status(runs_dir / "ddp-rank1")["state"] == rf.FINISHED


def test_an_exception_inside_the_with_block_marks_the_run_failed_and_is_reraised(runs_dir):
    with pytest.raises(ValueError, match="bad batch"):
        with trainer.init(run_id="broken", runs_dir=runs_dir) as run:
            train(run, 2)
            raise ValueError("bad batch")
    status = runs.read_status(runs_dir / "broken")
    assert status["state"] == rf.FAILED and status["message"] == "ValueError: bad batch"
    error = lines(runs_dir / "broken", rf.EVENTS_FILE)[-1]
    assert error["kind"] == "error" and "Traceback" in error["message"]
    with pytest.raises(RuntimeError, match="after run.finish"):
        run.log({"x": 1})


def test_a_nan_loss_alert_reaches_events_and_stderr_once_and_on_critical_stops(runs_dir, capsys):
    run = trainer.init(run_id="nan", runs_dir=runs_dir, config={"lr": 0.05}, on_critical="stop", stop_on=[])
    train(run, 12, nan_from=8)
    wait_until(run.should_stop)  # the doctor runs on the background thread
    train(run, 3, nan_from=1)  # more NaN rows: the same episode, not a new alert
    run.finish()
    assert alert_codes(runs_dir / "nan").count("non_finite") == 1
    printed = [line for line in capsys.readouterr().err.splitlines() if "non_finite" in line]
    # the step once: the message says it ("... (NaN/Inf) at step 8; ..."), so the line's head does not
    assert len(printed) == 1 and printed[0].startswith("[doctor] non_finite: ") and printed[0].count("at step 8") == 1
    assert printed[0].endswith("(to try in your script: lr=0.025)")  # its own config's lr, halved
    status = runs.read_status(runs_dir / "nan")
    assert status["state"] == rf.STOPPED and "doctor: non_finite" in status["message"]


def test_import_trainer_does_not_import_torch_and_init_is_lazy():
    code = "import sys, trainer; assert 'torch' not in sys.modules; trainer.init; assert 'torch' in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_example_script_runs_to_the_end_and_its_run_diagnoses(runs_dir):
    env = {**os.environ, "PYTHONPATH": str(ROOT), runs.RUNS_DIR_ENV: str(runs_dir)}
    argv = [sys.executable, str(ROOT / "examples" / "plain_loop.py"), "--steps", "300", "--run-id", "example"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = diagnose(runs_dir / "example")
    assert report["run"]["state"] == rf.FINISHED and report["run"]["step"] == 300
    # issue 11 part 4: a healthy run of the plain-loop example is in the doctor's corpus; slowdown and
    # memory_growth judge the (shared) machine, not the training (tests/test_tasks_presets.py)
    serious = [(a["code"], a["step"], a["message"]) for a in report["alerts"] if a["severity"] != "info"]
    assert not [a for a in serious if a[0] not in ("slowdown", "memory_growth")], serious
    assert lines(runs_dir / "example", rf.GRADS_FILE) and lines(runs_dir / "example", rf.SAMPLES_FILE)


def test_runs_table_disables_resume_and_fork_for_a_script_run_and_an_imported_log(runs_dir, monkeypatch, capsys):
    from streamlit.testing.v1 import AppTest

    from app import run_watch

    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(runs_dir))
    with trainer.init(run_id="script", runs_dir=runs_dir) as run:
        train(run, 2)
    csv = runs_dir.parent / "history.csv"
    csv.write_text("step,loss\n1,2.0\n2,1.9\n")
    assert cli.main(["import", "csv", str(csv), "--run-id", "imported", "--runs-dir", str(runs_dir)]) == 0
    try:
        at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=30).run()
        assert not at.exception, at.exception
        assert at.button(key="resume_script").disabled and at.button(key="fork_script").disabled
        assert "trainer.init" in at.button(key="fork_script").help
        assert at.button(key="resume_imported").disabled and at.button(key="fork_imported").disabled
        assert "no checkpoint of ours" in at.button(key="resume_imported").help
    finally:
        run_watch.stop_watcher()
    # the CLI says why, instead of failing on the first config key that is not ours, and writes nothing
    capsys.readouterr()  # what the AppTest run printed
    for argv, said in [
        (["resume", "script"], "only that script can resume it"),
        (["fork", "script", "--run-id", "script-2"], "only that script can fork it"),
        (["resume", "imported"], "imported from csv"),
        (["fork", "imported", "--run-id", "imported-2"], "no checkpoint of ours to fork"),
    ]:
        assert cli.main([*argv, "--runs-dir", str(runs_dir)]) == cli.EXIT_USAGE
        err = capsys.readouterr().err
        assert err.startswith("error: ") and said in err and err.count("\n") == 1, err
    assert sorted(p.name for p in runs_dir.iterdir()) == ["imported", "script"]


def test_the_runs_tables_stop_asks_a_script_run_through_should_stop_and_says_so(runs_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app import run_watch

    monkeypatch.setenv(runs.RUNS_DIR_ENV, str(runs_dir))
    run = trainer.init(run_id="live-script", runs_dir=runs_dir, doctor=False)
    train(run, 2)
    try:
        at = AppTest.from_file(str(ROOT / "app" / "Home.py"), default_timeout=30).run()
        at.button(key="stop_live-script").click().run()
        shown = " ".join(e.value for e in at.success).replace("\\", "")  # markdown escapes
        assert "should_stop()" in shown and "checkpoint" not in shown  # we save nothing for a script
        assert run.should_stop()
    finally:
        run.finish()
        run_watch.stop_watcher()
    assert runs.read_status(runs_dir / "live-script")["state"] == rf.STOPPED


# A script that logs and never looks at should_stop(): only a SIGTERM ends it.
DEAF_SCRIPT = """
import sys, time, trainer
run = trainer.init(run_id="deaf", runs_dir=sys.argv[1], doctor=False)
step = 0
while True:
    step += 1
    run.log({"train/loss": 1.0 / step}, step=step)
    if step == 20:
        print("logging", flush=True)
    time.sleep(0.005)
"""


def test_a_script_that_ignores_stop_is_terminated_and_recorded_stopped_with_its_rows(runs_dir):
    script = subprocess.Popen(
        [sys.executable, "-c", DEAF_SCRIPT, str(runs_dir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert script.stdout.readline().strip() == "logging"
        wait_until(lambda: runs.read_status(runs_dir / "deaf") is not None)
        state = runs.stop(runs_dir, "deaf", grace_s=0.5)  # the stop request, unanswered: SIGTERM
        assert script.wait(timeout=30) == -15  # it ends as SIGTERM always ended it
    finally:
        script.kill()
    assert state == rf.STOPPED
    status = runs.read_status(runs_dir / "deaf")
    assert status["state"] == rf.STOPPED and "SIGTERM after a stop request" in status["message"]
    steps = [r["step"] for r in lines(runs_dir / "deaf", rf.METRICS_FILE)]
    assert steps == list(range(1, len(steps) + 1)) and len(steps) > 20  # the rows up to the end, none lost
    assert status["step"] == steps[-1]


def test_a_scripts_own_sigterm_handler_is_left_in_place():
    from trainer.api import run as api_run

    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        api_run._handle_sigterm()  # what trainer.init does on its first run
        assert signal.getsignal(signal.SIGTERM) is mine
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        api_run._handle_sigterm()
        assert signal.getsignal(signal.SIGTERM) is api_run._record_then_terminate
    finally:
        signal.signal(signal.SIGTERM, previous)
