"""Metrics as frames: both parsers agree, nulls stay NaN rows, late series, bad rows counted."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from trainer.rundir import jsonl_frame
from trainer.rundir.jsonl_frame import Columns, GrowingFrame, parse_numeric_lines
from trainer.rundir.reader import RunReader, read_metrics
from trainer.rundir.writer import open_run, truncate_after_step


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
    assert len(block) > jsonl_frame.FAST_MIN_BYTES  # so the fast path is really taken
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
    assert frame.capacity < 2 * 3000 + 1024  # capacity doubles, it is not resized per append
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


# --- the polars fast path: what a cold load of a big file must keep -------------------------
def fast_frame(block, known=()):
    frame, pieces = GrowingFrame(), parse_numeric_lines(block, known)
    frame.extend(pieces)
    return frame.frame(), sum(p.malformed for p in pieces)


def slow_frame(block):
    frame, columns = GrowingFrame(), jsonl_frame._parse_with_json(block)
    frame.append(columns)
    return frame.frame(), columns.malformed


def compact(records):
    return b"".join(json.dumps(r, separators=(",", ":"), allow_nan=False).encode() + b"\n" for r in records)


@pytest.fixture
def polars_only(monkeypatch):
    """Small pieces, so that a file has many; and any fall back to pyarrow or json.loads fails."""
    pytest.importorskip("polars")
    monkeypatch.setattr(jsonl_frame, "BIG_PIECE_BYTES", 64 * 1024)

    def refuse(block):
        raise AssertionError("the fast path fell back")

    monkeypatch.setattr(jsonl_frame, "_parse_with_pyarrow", refuse)
    monkeypatch.setattr(jsonl_frame, "_parse_with_json", refuse)


def test_series_first_seen_in_a_later_piece_survive_the_fast_path(polars_only):
    records = [{"step": s, "time": 1.0 * s, "train/loss": 1.0 / (s + 1)} for s in range(6000)]
    for record in records[::100]:
        record["val/loss"] = 2.0  # every 100 rows, as evals are logged
    for record in records[4000:]:
        record["resumed/series"] = 3  # from a resume on, as an int
    records[5000]["all/null"] = None  # a key whose only value is a null
    block = compact(records)
    assert len(block) > 6 * jsonl_frame.BIG_PIECE_BYTES  # the new keys arrive in later pieces
    frame, malformed = fast_frame(block)
    assert malformed == 0
    late = ["resumed/series", "all/null"]
    assert list(frame.columns) == ["step", "time", "train/loss", "val/loss", *late]  # in order of first appearance
    assert frame["val/loss"].notna().sum() == 60 and frame.loc[5900, "val/loss"] == 2.0
    assert frame["resumed/series"].iloc[:4000].isna().all() and (frame["resumed/series"].iloc[4000:] == 3.0).all()
    assert frame["all/null"].isna().all()
    # A tail that already knows some columns finds the new ones too.
    frame, _ = fast_frame(compact(records[4500:]), known=["step", "time", "train/loss"])
    assert list(frame.columns) == ["step", "time", "train/loss", "val/loss", *late]
    assert (frame["resumed/series"] == 3.0).all()


def test_series_new_in_a_later_piece_keep_the_order_they_first_appear_in(polars_only):
    records = [{"step": s, "time": 1.0 * s, "train/loss": 0.5} for s in range(4000)]
    records[3000]["b/late"] = 1.0
    records[3001].update({"z/late": 2.0, "a/late": 3.0})  # polars lists these before b/late
    frame, _ = fast_frame(compact(records))
    assert list(frame.columns) == ["step", "time", "train/loss", "b/late", "z/late", "a/late"]


def test_nulls_read_as_nan_and_step_stays_int_on_the_fast_path(polars_only):
    records = [{"step": s, "time": 1.0 * s, "train/loss": 1.0, "grad/norm": 2.0} for s in range(3000)]
    for record in records[1500:]:
        record["train/loss"] = None  # diverged: written as null from here on
    records[2000]["grad/norm"] = None
    frame, malformed = fast_frame(compact(records))
    assert malformed == 0 and len(frame) == 3000
    assert frame["step"].dtype == np.int64 and frame["step"].tolist() == list(range(3000))
    assert frame["train/loss"].dtype == np.float64
    assert frame["train/loss"].iloc[1500:].isna().all() and (frame["train/loss"].iloc[:1500] == 1.0).all()
    assert math.isnan(frame.loc[2000, "grad/norm"]) and frame["grad/norm"].notna().sum() == 2999


def test_malformed_line_in_the_middle_of_a_big_file_is_counted_and_the_rest_read(tmp_path, monkeypatch):
    pytest.importorskip("polars")
    monkeypatch.setattr(jsonl_frame, "BIG_PIECE_BYTES", 64 * 1024)
    lines = compact({"step": s, "time": 1.0 * s, "train/loss": s / 10} for s in range(10_000)).splitlines(True)
    lines[5000] = b'{"step":5000,"time":5000.0,"train/lo\n'  # torn mid-file by a crash, then appended to
    (tmp_path / "metrics.jsonl").write_bytes(b"".join(lines))
    reader = RunReader(tmp_path)
    frame = reader.metrics
    assert reader.malformed["metrics.jsonl"] == 1
    assert len(frame) == 9999 and 5000 not in set(frame["step"])
    assert frame["step"].iloc[-1] == 9999 and frame.loc[frame["step"] == 5001, "train/loss"].item() == 500.1


def test_fast_path_gives_the_slow_paths_frame_exactly_on_20k_varied_rows(monkeypatch):
    pytest.importorskip("polars")
    monkeypatch.setattr(jsonl_frame, "BIG_PIECE_BYTES", 256 * 1024)
    monkeypatch.setattr(jsonl_frame, "PIECE_BYTES", 32 * 1024)
    records = varied_records(20_000)
    records[3].update({"z/3": 1.0, "a/3": 2.0, "m/3": 3.0})  # a row wider than the first: polars puts its keys first
    for step in (7001, 13_000):
        records[step]["late/null"] = None
    records[15_000]["late/null"] = 4.5
    lines = compact(records).splitlines(True)
    lines[9000] = b'{"step":9000,"train/loss":\n'  # malformed
    lines[11_000] = b'{"time":1.0,"train/loss":1.0}\n'  # no step
    block = b"".join(lines)
    fast, fast_malformed = fast_frame(block)
    slow, slow_malformed = slow_frame(block)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast_malformed == slow_malformed == 2 and len(fast) == 19_998
    monkeypatch.setattr(jsonl_frame, "pl", None)  # without polars: pyarrow, the same frame
    pd.testing.assert_frame_equal(fast_frame(block)[0], slow)


TRICKY_LINES = {
    "duplicated key": b'{"step":1500,"train/loss":1.0,"train/loss":2.0}',  # json.loads keeps the last
    "null then duplicate": b'{"step":1500,"train/loss":null,"train/loss":2.0}',
    "colon in a key": b'{"step":1500,"eval:loss":1.5}',
    "null under a colon key": b'{"step":1500,"eval:loss":null}',
    "string with colons, new key": b'{"step":1500,"note":"a:b\\":null"}',
    "null written with a space": b'{"step":1500, "new/key": null}',
    "bool": b'{"step":1500,"train/loss":true}',
    "nested": b'{"step":1500,"train/loss":{"a":1}}',
    "step 1500.0": b'{"step":1500.0,"train/loss":1.0}',
    "step 1500.5": b'{"step":1500.5,"train/loss":1.0}',
    "step as text": b'{"step":"1500","train/loss":1.0}',
    "no step": b'{"train/loss":1.0}',
    "non-ascii key": '{"step":1500,"überloss":1.0}'.encode(),
    "not an object": b"[1, 2]",
}


@pytest.mark.parametrize("case", TRICKY_LINES)
def test_a_tricky_line_gives_the_slow_paths_frame_and_malformed_count(case, monkeypatch):
    pytest.importorskip("polars")
    monkeypatch.setattr(jsonl_frame, "BIG_PIECE_BYTES", 32 * 1024)
    monkeypatch.setattr(jsonl_frame, "PIECE_BYTES", 8 * 1024)
    lines = compact({"step": s, "time": 1.0 * s, "train/loss": 0.5} for s in range(2000)).splitlines(True)
    lines[1500] = TRICKY_LINES[case] + b"\n"
    block = b"".join(lines)
    assert block.index(TRICKY_LINES[case]) > jsonl_frame.BIG_PIECE_BYTES  # in a later piece: the columns are known
    (fast, fast_malformed), (slow, slow_malformed) = fast_frame(block), slow_frame(block)
    pd.testing.assert_frame_equal(fast, slow)
    assert fast_malformed == slow_malformed
