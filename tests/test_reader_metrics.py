"""Metrics as frames: both parsers agree, nulls stay NaN rows, late series, bad rows counted."""

import json
import math

import numpy as np
import pandas as pd

from trainer import jsonl_frame
from trainer.jsonl_frame import Columns, GrowingFrame, parse_numeric_lines
from trainer.reader import RunReader, read_metrics
from trainer.writer import open_run, truncate_after_step


def jsonl(records):
    return "".join(json.dumps(r, allow_nan=False) + "\n" for r in records).encode()


def varied_records(n):
    """Nulls, keys missing from some rows, a series that starts late, ints mixed with floats."""
    records = []
    for step in range(n):
        record = {"step": step, "time": 1000.0 + step, "train/loss": 3.0 - step * 1e-4}
        if step % 10 == 0:
            record["val/loss"] = None if step % 30 == 0 else 2.5
        if step >= n // 2:
            record["late/series"] = step  # an int
        if step % 7 == 0:
            record["lr"] = 0.001
        records.append(record)
    return records


def test_pyarrow_and_json_parsers_give_the_same_frame():
    block = jsonl(varied_records(3000))
    assert len(block) > jsonl_frame.PYARROW_MIN_BYTES  # so the fast path is really taken
    fast = GrowingFrame()
    for columns in parse_numeric_lines(block):
        fast.append(columns)
    slow = GrowingFrame()
    slow.append(jsonl_frame._parse_with_json(block))
    pd.testing.assert_frame_equal(fast.frame(), slow.frame())
    frame = fast.frame()
    assert list(frame.columns) == ["step", "time", "train/loss", "val/loss", "lr", "late/series"]
    assert frame["step"].dtype == np.int64 and frame["late/series"].dtype == np.float64
    assert math.isnan(frame.loc[0, "val/loss"]) and frame.loc[10, "val/loss"] == 2.5
    assert frame["late/series"].iloc[:1500].isna().all() and frame.loc[2999, "late/series"] == 2999.0


def test_one_malformed_line_in_a_big_block_costs_only_that_line(tmp_path, monkeypatch):
    monkeypatch.setattr(jsonl_frame, "PIECE_BYTES", 16 * 1024)  # several pieces: most stay on pyarrow
    json_pieces = []
    parse_with_json = jsonl_frame._parse_with_json
    monkeypatch.setattr(jsonl_frame, "_parse_with_json", lambda b: json_pieces.append(b) or parse_with_json(b))
    records = varied_records(6000)
    lines = jsonl(records).splitlines(keepends=True)
    lines.insert(3000, b'{"step": 3000.5, "train/loss": oops\n')
    lines.insert(4000, b'{"train/loss": 1.0}\n')  # valid JSON, but no step
    lines.insert(5000, b'{"step": 17, "train/loss": "text"}\n')  # kept, the string is not a number
    path = tmp_path / "metrics.jsonl"
    path.write_bytes(b"".join(lines))
    frame = read_metrics(path)
    assert len(frame) == 6001
    assert frame["step"].tolist()[:3] == [0, 1, 2]
    seventeen = frame[frame["step"] == 17]["train/loss"].tolist()  # the real row, then the "text" row
    assert seventeen[0] == 3.0 - 17e-4 and math.isnan(seventeen[1])
    assert 1 <= len(json_pieces) <= 3  # only the pieces around the bad lines were re-read line by line
    reader = RunReader(tmp_path)
    assert len(reader.metrics) == 6001 and reader.malformed["metrics.jsonl"] == 2


def test_non_finite_values_are_written_as_null_and_read_as_nan_rows(runs_dir):
    run = open_run(runs_dir, "nan-run")
    run.log(0, {"train/loss": 2.0})
    run.log(1, {"train/loss": float("nan"), "grad/norm": float("inf")})
    run.log(2, {"train/loss": 1.5})
    run.finish()
    text = (runs_dir / "nan-run" / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text and '"train/loss":null' in text
    frame = read_metrics(runs_dir / "nan-run" / "metrics.jsonl")
    assert frame["step"].tolist() == [0, 1, 2]
    assert math.isnan(frame.loc[1, "train/loss"]) and math.isnan(frame.loc[1, "grad/norm"])
    assert frame.loc[2, "train/loss"] == 1.5


def test_series_first_logged_at_step_500_appears_as_a_column_with_nan_before(runs_dir):
    run = open_run(runs_dir, "late")
    for step in range(500):
        run.log(step, {"train/loss": 1.0})
    run.flush()
    reader = RunReader(runs_dir / "late")
    assert list(reader.metrics.columns) == ["step", "time", "train/loss"]
    for step in range(500, 510):
        run.log(step, {"train/loss": 1.0, "val/loss": 0.5})
    run.finish()
    assert reader.refresh()
    frame = reader.metrics
    assert list(frame.columns) == ["step", "time", "train/loss", "val/loss"]
    assert frame["val/loss"].iloc[:500].isna().all() and (frame["val/loss"].iloc[500:] == 0.5).all()


def test_refresh_adds_only_the_new_rows_and_keeps_earlier_frames_unchanged(runs_dir):
    run = open_run(runs_dir, "grow")
    for step in range(100):
        run.log(step, {"train/loss": float(step)})
    run.flush()
    reader = RunReader(runs_dir / "grow")
    before = reader.metrics
    for step in range(100, 130):
        run.log(step, {"train/loss": float(step), "lr": 0.1})
    run.flush()
    assert reader.refresh() and not reader.refresh()
    after = reader.metrics
    assert after["step"].tolist() == list(range(130))
    assert len(before) == 100 and list(before.columns) == ["step", "time", "train/loss"]
    assert before["train/loss"].tolist() == [float(s) for s in range(100)]
    run.finish()


def test_frames_grow_without_copying_what_was_already_read():
    frame = GrowingFrame()
    frame.append(Columns({"step": np.arange(3), "time": np.zeros(3), "x": np.ones(3)}, 3))
    first = frame.frame()
    for start in range(3, 3000, 3):
        frame.append(Columns({"step": np.arange(start, start + 3), "time": np.zeros(3)}, 3))
    grown = frame.frame()
    assert len(grown) == 3000 and grown["x"].iloc[3:].isna().all()
    assert frame._capacity < 2 * 3000 + 1024  # capacity doubles, it is not resized per append
    assert first["x"].tolist() == [1.0, 1.0, 1.0] and len(first) == 3
    # frame() wraps the buffers: asking twice does not copy.
    assert np.shares_memory(frame.frame()["step"].to_numpy(), grown["step"].to_numpy())


def test_resume_truncation_drops_rows_past_the_checkpoint_and_reader_starts_over(runs_dir):
    run = open_run(runs_dir, "resumed")
    for step in range(20):
        run.log(step, {"train/loss": float(step)})
    run.finish("failed")
    reader = RunReader(runs_dir / "resumed")
    assert len(reader.metrics) == 20
    with open(runs_dir / "resumed" / "metrics.jsonl", "a") as f:
        f.write('{"step": 20, "train/lo')  # the crash tore the last line
    assert truncate_after_step(runs_dir / "resumed" / "metrics.jsonl", 9) == 11
    run = open_run(runs_dir, "resumed", resume_step=9)
    for step in range(10, 15):
        run.log(step, {"train/loss": -float(step)})
    run.finish()
    assert reader.refresh()
    assert reader.resets >= 1
    frame = reader.metrics
    assert frame["step"].tolist() == list(range(15))
    assert frame["train/loss"].tolist()[9:] == [9.0, -10.0, -11.0, -12.0, -13.0, -14.0]


def test_missing_metrics_file_gives_an_empty_frame_with_step_and_time(tmp_path):
    frame = read_metrics(tmp_path / "nothing.jsonl")
    assert list(frame.columns) == ["step", "time"] and frame.empty
