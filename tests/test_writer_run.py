"""RunWriter: lines reach disk on their own, status.json is replaced whole, bad input is refused."""

import json
import os
import threading
import time

import numpy as np
import pytest
import torch

from trainer.errors import RunExists, RunIdError
from trainer.rundir import run_format as rf
from trainer.rundir import writer as writer_module
from trainer.rundir.writer import open_run, truncate_after_step


def metrics_lines(run_dir):
    path = run_dir / "metrics.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def test_rows_reach_the_file_within_about_a_second_without_flush(runs_dir):
    run = open_run(runs_dir, "auto")
    run.log(0, {"train/loss": 1.0})
    deadline = time.monotonic() + 3 * writer_module.FLUSH_SECONDS
    while not metrics_lines(runs_dir / "auto") and time.monotonic() < deadline:
        time.sleep(0.05)
    waited = time.monotonic() - (deadline - 3 * writer_module.FLUSH_SECONDS)
    assert metrics_lines(runs_dir / "auto") and waited < 2 * writer_module.FLUSH_SECONDS
    run.finish()


def test_status_json_is_replaced_atomically_so_readers_never_see_half_a_file(runs_dir):
    run = open_run(runs_dir, "atomic")
    status_path = runs_dir / "atomic" / "status.json"
    original = open(status_path, "rb")  # held open, so its inode cannot be reused by a later file
    torn, stop = [], threading.Event()

    def read_constantly():
        while not stop.is_set():
            try:
                json.loads(status_path.read_bytes())
            except ValueError:
                torn.append(1)

    reader = threading.Thread(target=read_constantly)
    reader.start()
    for step in range(60):
        run.set_status("running", step=step, message="x" * (step % 50))
    stop.set()
    reader.join()
    run.finish()
    assert torn == []
    with original:  # the first file was never written into again: each update is a new file
        assert status_path.stat().st_ino != os.fstat(original.fileno()).st_ino
        assert json.loads(original.read())["state"] == "starting"
    assert [p.name for p in (runs_dir / "atomic").iterdir() if p.name.endswith(".tmp")] == []
    assert json.loads(status_path.read_text())["state"] == "finished"


def test_heartbeat_is_refreshed_while_the_run_is_quiet(runs_dir, monkeypatch):
    monkeypatch.setattr(writer_module, "FLUSH_SECONDS", 0.05)
    monkeypatch.setattr(rf, "HEARTBEAT_SECONDS", 0.25)  # refreshed every HEARTBEAT_SECONDS / 2.5
    run = open_run(runs_dir, "beat")
    first = json.loads((runs_dir / "beat" / "status.json").read_text())["updated"]
    time.sleep(0.6)
    later = json.loads((runs_dir / "beat" / "status.json").read_text())["updated"]
    run.finish()
    assert later > first + 0.05


def test_truncate_after_step_drops_later_rows_and_a_torn_line_through_a_new_file(tmp_path):
    path = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 1.0}) for s in range(10)]
    path.write_text("\n".join(lines) + "\n" + "not json but kept\n" + '{"step": 10, "lo')
    inode = path.stat().st_ino
    assert truncate_after_step(path, 4) == 6  # steps 5..9 and the torn line
    kept = path.read_text().splitlines()
    assert [json.loads(x)["step"] for x in kept[:-1]] == [0, 1, 2, 3, 4] and kept[-1] == "not json but kept"
    assert path.stat().st_ino != inode
    assert truncate_after_step(path, 4) == 0 and truncate_after_step(tmp_path / "missing.jsonl", 4) == 0


def test_a_new_run_refuses_an_existing_run_directory(runs_dir):
    open_run(runs_dir, "taken").finish()
    with pytest.raises(RunExists, match="already exists"):
        open_run(runs_dir, "taken")
    (runs_dir / "launched").mkdir()
    (runs_dir / "launched" / rf.LOG_FILE).write_text("starting\n")  # a launcher's log only: allowed
    open_run(runs_dir, "launched").finish()
    with pytest.raises(RunIdError):
        open_run(runs_dir, "../escape")


@pytest.mark.parametrize("value", ["1.5", [1.0, 2.0], {"a": 1}, torch.ones(3)])
def test_a_non_scalar_metric_is_refused_with_a_type_error_naming_the_key(runs_dir, value):
    run = open_run(runs_dir, "bad")
    with pytest.raises(TypeError, match="'train/loss'.*not a scalar"):
        run.log(0, {"train/loss": value})
    run.finish()


@pytest.mark.parametrize("encoder", ["orjson", "json"])
def test_tensors_numpy_and_non_finite_values_are_written_as_plain_json(runs_dir, monkeypatch, encoder):
    if encoder == "json":
        monkeypatch.setattr(writer_module, "orjson", None)
    run = open_run(runs_dir, "kinds")
    run.log(
        3,
        {"a": torch.tensor(2.5), "b": np.float32(0.5), "c": np.int64(7), "d": float("nan"), "e": -float("inf")},
    )
    run.log_sample(3, pred=[1.0, float("nan")], target=np.array([0.5, 1.5]))
    run.finish()
    (row,) = [json.loads(x) for x in metrics_lines(runs_dir / "kinds")]
    assert row["step"] == 3 and isinstance(row["time"], float)
    assert {k: row[k] for k in "abcde"} == {"a": 2.5, "b": 0.5, "c": 7.0, "d": None, "e": None}
    sample = json.loads((runs_dir / "kinds" / "samples.jsonl").read_text())
    assert sample["pred"] == [1.0, None] and sample["target"] == [0.5, 1.5]


@pytest.mark.parametrize("encoder", ["orjson", "json"])
def test_rows_written_together_are_one_line_each_whatever_their_keys_hold(runs_dir, monkeypatch, encoder):
    if encoder == "json":
        monkeypatch.setattr(writer_module, "orjson", None)
    # keys that spell a row boundary, quotes and newlines; a user's own "step"; an int past 64 bits
    # (orjson refuses it: the rows are then encoded one by one)
    rows = [
        (1, {'a"},{"step":9': 1.0, "x": float("nan")}, 10.0),
        (2, {"step": 5, "b\n},{": 2}, 11.0),
        (3, {"c": 3.5}, 12.0),
    ]
    big = [(4, {"huge": 2**70}, 13.0)]
    run = open_run(runs_dir, "rows")
    run.log_rows([])
    run.log_rows(rows)
    run.log_rows(big)
    run.finish()
    written = [json.loads(x) for x in metrics_lines(runs_dir / "rows")]
    assert written == [
        {"step": 1, "time": 10.0, 'a"},{"step":9': 1.0, "x": None},
        {"step": 5, "time": 11.0, "b\n},{": 2},
        {"step": 3, "time": 12.0, "c": 3.5},
        {"step": 4, "time": 13.0, "huge": 2**70},
    ]


def test_an_exception_inside_the_run_marks_it_failed_with_the_message(runs_dir):
    with pytest.raises(ZeroDivisionError):
        with open_run(runs_dir, "boom") as run:
            run.log(0, {"train/loss": 1.0})
            _ = 1 / 0
    status = json.loads((runs_dir / "boom" / "status.json").read_text())
    assert status["state"] == "failed" and "ZeroDivisionError" in status["message"]
    assert len(metrics_lines(runs_dir / "boom")) == 1
    with pytest.raises(RuntimeError, match="finished"):
        run.log(1, {"train/loss": 1.0})
