"""`python -m trainer import`: TensorBoard logs and CSV tables become run directories the reader and doctor read."""

import importlib.util
import json
import math
import sys

import pytest
import yaml

from trainer import cli, doctor
from trainer.rundir import run_format as rf
from trainer.rundir.reader import RunReader
from trainer.runs import importing

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None,
    reason="tensorboard is not installed (it is in requirements-test.txt): pip install tensorboard",
)


def run_cli(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def write_tensorboard_log(logdir):
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(logdir))
    for step in range(1, 51):
        writer.add_scalar("loss", 4.0 * math.exp(-step / 20) + 1.0, step)
        writer.add_scalar("learning_rate", 1e-3, step)
        writer.add_scalar("accuracy", step / 50, step)
        if step % 10 == 0:
            writer.add_scalar("eval_loss", 4.2 * math.exp(-step / 20) + 1.1, step)
    writer.add_text("sample", "to be or not to be", 50)
    writer.add_hparams({"lr": 1e-3, "optimizer": "adamw"}, {"hparam/done": 1.0}, run_name=".")
    writer.close()


def test_well_known_names_become_ours_and_others_keep_theirs():
    names = importing.series_names(["loss", "eval_loss", "learning_rate", "grad_norm", "accuracy"])
    assert names == {
        "loss": rf.TRAIN_LOSS,
        "eval_loss": rf.VAL_LOSS,
        "learning_rate": rf.LR,
        "grad_norm": rf.GRAD_NORM,
        "accuracy": "accuracy",
    }
    # two names for one series: the one spelled our way gets it, the other keeps its own
    assert importing.series_names(["loss", "train/loss"]) == {"train/loss": rf.TRAIN_LOSS, "loss": "loss"}


@needs_tensorboard
def test_a_tensorboard_log_imports_and_the_reader_and_doctor_read_it(capsys, tmp_path, runs_dir):
    logdir = tmp_path / "tb"
    write_tensorboard_log(logdir)
    code, out, err = run_cli(capsys, "import", "tensorboard", logdir, "--run-id", "tb1", "--runs-dir", runs_dir)
    assert code == 0, err
    # steps 1-50, and step 0 for add_hparams' metric
    assert out.startswith("imported tb1: 51 steps, 5 series, 1 samples")

    run = RunReader(runs_dir / "tb1").snapshot()
    metrics = run.metrics.set_index("step")
    assert metrics.index.tolist() == list(range(51)) and metrics.loc[0, "hparam/done"] == 1.0
    assert metrics.loc[1, rf.TRAIN_LOSS] == pytest.approx(4.0 * math.exp(-1 / 20) + 1.0)
    assert metrics[rf.VAL_LOSS].notna().sum() == 5 and "accuracy" in metrics and rf.LR in metrics
    assert run.status["state"] == rf.FINISHED and run.status["best_val_loss"] == pytest.approx(
        4.2 * math.exp(-2.5) + 1.1
    )
    [sample] = [json.loads(line) for line in (runs_dir / "tb1" / rf.SAMPLES_FILE).read_text().splitlines()]
    assert (sample["step"], sample["text"], sample["tag"]) == (50, "to be or not to be", "sample")
    config = yaml.safe_load((runs_dir / "tb1" / rf.CONFIG_FILE).read_text())
    assert config == {"lr": pytest.approx(1e-3), "optimizer": "adamw"}

    result = doctor.diagnose(runs_dir / "tb1")
    assert result["run"]["state"] == rf.FINISHED and result["run"]["step"] == 50
    assert not [a for a in result["alerts"] if a["severity"] == "critical"]
    assert [p.name for p in runs_dir.iterdir()] == ["tb1"]  # no staging folder left


@needs_tensorboard
def test_an_imported_logs_failure_is_an_alert_in_its_events_and_the_import_says_so(capsys, tmp_path, runs_dir):
    """The doctor reads the log at import, and its alerts go where the online doctor's go, so the
    runs table's alerts column and the Diagnosis page show them (they showed none: no events)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(tmp_path / "tb"))
    for step in range(1, 61):  # written as a run at 2 steps/s writes them (the doctor times it by them)
        loss = math.nan if step >= 45 else 4.0 * math.exp(-step / 20) + 1.0
        writer.add_scalar("loss", loss, step, walltime=1.7e9 + step / 2)
    writer.close()
    code, out, err = run_cli(
        capsys, "import", "tensorboard", tmp_path / "tb", "--run-id", "nan", "--runs-dir", runs_dir
    )
    assert code == 0, err
    assert "critical non_finite: train/loss became non-finite (NaN/Inf) at step 45" in out
    events = [json.loads(line) for line in (runs_dir / "nan" / rf.EVENTS_FILE).read_text().splitlines()]
    alerts = [e for e in events if e["kind"] == "alert"]
    assert [(a["code"], a["severity"], a["step"]) for a in alerts] == [("non_finite", "critical", 45)]
    assert events[-1]["kind"] == "finish"  # the alerts come before the run's end
    from trainer import runs

    (listed,) = runs.list_runs(runs_dir)
    assert listed.alert_counts["critical"] == 1, listed


@needs_tensorboard
def test_each_event_folder_under_a_logdir_becomes_its_own_run(capsys, tmp_path, runs_dir):
    for version in ("version_0", "version_1"):
        write_tensorboard_log(tmp_path / "lightning_logs" / version)
    code, out, _ = run_cli(capsys, "import", "tensorboard", tmp_path / "lightning_logs", "--runs-dir", runs_dir)
    assert code == 0 and sorted(p.name for p in runs_dir.iterdir()) == ["version_0", "version_1"]


def test_a_csv_imports_with_the_same_renaming(capsys, tmp_path, runs_dir):
    table = tmp_path / "metrics.csv"
    rows = ["epoch,step,train_loss,val_loss,note"]
    rows += [f"0,{step},{3.0 - step / 100},,ok" for step in range(1, 41)]
    rows += ["0,20,,2.9,ok", "0,40,,2.7,ok"]  # Lightning's CSVLogger: val rows of their own
    table.write_text("\n".join(rows) + "\n")
    code, out, err = run_cli(capsys, "import", "csv", table, "--runs-dir", runs_dir)
    assert code == 0, err
    assert out.startswith("imported metrics: 40 steps, 3 series from csv")
    metrics = RunReader(runs_dir / "metrics").snapshot().metrics
    assert sorted(c for c in metrics if c not in ("step", "time")) == ["epoch", rf.TRAIN_LOSS, rf.VAL_LOSS]
    assert metrics.set_index("step")[rf.VAL_LOSS].dropna().to_dict() == {20: 2.9, 40: 2.7}
    assert doctor.diagnose(runs_dir / "metrics")["run"]["state"] == rf.FINISHED


def test_csvs_that_wandb_and_tensorboard_export_import_with_their_series_named(tmp_path, runs_dir):
    # a W&B chart's CSV: Step, "<run> - <key>" and the __MIN/__MAX of the points it merged
    chart = ["Step,lucky-run-7 - train/loss,lucky-run-7 - train/loss__MIN,lucky-run-7 - train/loss__MAX"]
    chart += [f"{s},{3 - s / 100},{2.9 - s / 100},{3.1 - s / 100}" for s in range(1, 31)]
    (wandb_chart,) = importing.write_runs(
        runs_dir, [importing.read_csv(_write(tmp_path / "wandb.csv", "\n".join(chart)))]
    )
    assert wandb_chart.series == [rf.TRAIN_LOSS] and wandb_chart.rows[30][rf.TRAIN_LOSS] == pytest.approx(2.7)
    # a W&B history export: _step, _timestamp (wall clock) and _runtime are not series
    history = ["_step,_runtime,_timestamp,train/loss,learning_rate"]
    history += [f"{s},{s * 0.5},{1.7e9 + s * 0.5},{3 - s / 100},0.001" for s in range(30)]
    run = importing.read_csv(_write(tmp_path / "history.csv", "\n".join(history)))
    assert run.series == [rf.LR, rf.TRAIN_LOSS] and run.times[29] == pytest.approx(1.7e9 + 14.5)
    # TensorBoard's download of one tag: "Wall time,Step,Value" in run-<run>-tag-<tag>.csv
    tb = ["Wall time,Step,Value"] + [f"{1.7e9 + s},{s},{3 - s / 100}" for s in range(1, 31)]
    run = importing.read_csv(_write(tmp_path / "run-version_0-tag-train_loss.csv", "\n".join(tb)))
    assert run.run_id == "version_0" and run.series == [rf.TRAIN_LOSS] and run.times[1] == pytest.approx(1.7e9 + 1)


@pytest.mark.parametrize(
    ("source", "make", "first_words"),
    [
        ("csv", lambda p: p / "missing.csv", "error: no file "),
        ("csv", lambda p: _write(p / "a.csv", "epoch,loss\n1,2.0\n"), "error: "),
        ("csv", lambda p: _write(p / "a.csv", "step,loss\nten,2.0\n"), "error: "),
        ("tensorboard", lambda p: p / "missing", "error: no directory "),
        ("tensorboard", lambda p: (p / "empty").mkdir() or p / "empty", "error: no TensorBoard event files"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(
    capsys, tmp_path, runs_dir, source, make, first_words
):
    code, _, err = run_cli(capsys, "import", source, make(tmp_path), "--runs-dir", runs_dir)
    assert code == 2 and err.startswith(first_words) and err.count("\n") == 1, err
    assert list(runs_dir.iterdir()) == []


def _write(path, text):
    path.write_text(text)
    return path


def test_csv_errors_name_the_problem(tmp_path):
    with pytest.raises(importing.ImportSourceError, match="has no step column \\(columns: epoch, loss\\)"):
        importing.read_csv(_write(tmp_path / "a.csv", "epoch,loss\n1,2.0\n"))
    with pytest.raises(importing.ImportSourceError, match="line 3: step 'ten' is not a whole number"):
        importing.read_csv(_write(tmp_path / "b.csv", "step,loss\n1,2.0\nten,2.0\n"))


def test_an_existing_run_id_is_refused_and_left_alone(capsys, tmp_path, runs_dir):
    table = _write(tmp_path / "m.csv", "step,loss\n1,2.0\n2,1.5\n")
    assert run_cli(capsys, "import", "csv", table, "--run-id", "x", "--runs-dir", runs_dir)[0] == 0
    before = (runs_dir / "x" / rf.METRICS_FILE).read_text()
    code, _, err = run_cli(capsys, "import", "csv", table, "--run-id", "x", "--runs-dir", runs_dir)
    assert code == 2 and err.startswith("error: run 'x' already exists")
    assert (runs_dir / "x" / rf.METRICS_FILE).read_text() == before and sorted(runs_dir.iterdir()) == [runs_dir / "x"]


def test_without_tensorboard_the_import_says_how_to_get_it(capsys, tmp_path, runs_dir, monkeypatch):
    (tmp_path / "tb").mkdir()
    (tmp_path / "tb" / "events.out.tfevents.1.host").write_bytes(b"")
    for name in ["tensorboard", *(m for m in sys.modules if m.startswith("tensorboard."))]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails, as where it is not installed
    code, _, err = run_cli(capsys, "import", "tensorboard", tmp_path / "tb", "--runs-dir", runs_dir)
    assert code == 2 and err.strip().endswith("pip install tensorboard") and list(runs_dir.iterdir()) == []
