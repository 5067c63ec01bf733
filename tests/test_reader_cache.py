"""The metrics cache (trainer/rundir/metrics_cache.py) and its min/max summaries: never read stale,
rebuilt or extended as the JSON lines change, and what charts draw from it."""

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from trainer.doctor import diagnose, runfiles
from trainer.rundir import run_format as rf
from trainer.rundir.metrics_cache import MetricsCache, cache_dir
from trainer.rundir.metrics_store import MetricsStore
from trainer.rundir.reader import RunReader, read_metrics
from trainer.rundir.summary import LEVELS, bucket_rows, summary_index, summary_table


def rows(first, last, loss=lambda s: 1.0 / s, extra=None):
    lines = []
    for step in range(first, last + 1):
        row = {"step": step, "time": 1000.0 + step, "train/loss": loss(step)}
        row.update((extra or {}).get(step, {}))
        lines.append(json.dumps(row, separators=(",", ":")) + "\n")
    return "".join(lines)


def write(path, text, mode="w"):
    with open(path, mode) as f:
        f.write(text)


def open_store(path, segment_rows=64):
    store = MetricsStore(path, segment_rows=segment_rows)
    store.refresh()
    return store


def cached_offset(path):
    return json.loads((cache_dir(path) / rf.METRICS_CACHE_META).read_text())["offset"]


def test_a_run_is_cached_beside_its_metrics_and_reopens_from_the_cache(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    first = open_store(path).view().frame()
    assert (tmp_path / rf.METRICS_CACHE_DIR / rf.METRICS_CACHE_META).is_file()
    assert cached_offset(path) == path.stat().st_size
    again = open_store(path)
    assert again.segments >= 1 and len(again.view()._parts) == again.segments  # nothing parsed: all cached
    pd.testing.assert_frame_equal(again.view().frame(), first)
    assert first["step"].tolist() == list(range(1, 5001))


def test_an_appended_file_extends_the_cache_and_keeps_its_segments(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    open_store(path)
    before = set(os.listdir(cache_dir(path)))
    write(path, rows(5001, 5100), "a")
    store = open_store(path)
    assert before - {rf.METRICS_CACHE_META} <= set(os.listdir(cache_dir(path)))  # old segments kept
    assert cached_offset(path) == path.stat().st_size  # the appended rows went into a new segment
    assert store.view().frame()["step"].tolist() == list(range(1, 5101))


def test_a_truncated_file_is_never_read_from_a_stale_cache(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    open_store(path)
    write(path, rows(1, 3000))  # truncated in place (same inode), as `> metrics.jsonl` would
    assert MetricsCache(path).load() is None  # refused (and cleared), not read
    frame = open_store(path).view().frame()
    assert frame["step"].tolist() == list(range(1, 3001))
    assert cached_offset(path) == path.stat().st_size  # rebuilt for the new file


def test_a_truncated_and_regrown_file_is_not_taken_for_an_appended_one(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000, loss=lambda s: 1.0))
    open_store(path)
    # Rewritten in place and longer, every line where it was: only the values differ.
    write(path, rows(1, 6000, loss=lambda s: 7.0))
    frame = open_store(path).view().frame()
    assert (frame["train/loss"] == 7.0).all() and len(frame) == 6000


@pytest.mark.parametrize("how", ["os.replace", "in place"])
def test_a_replaced_file_of_the_same_size_is_rebuilt(tmp_path, how):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000, loss=lambda s: 1.0))
    open_store(path)
    other = rows(1, 5000, loss=lambda s: 2.0)
    assert len(other) == path.stat().st_size
    if how == "os.replace":  # a resume's truncation: a new inode
        write(tmp_path / "new", other)
        os.replace(tmp_path / "new", path)
    else:
        with open(path, "r+") as f:
            f.write(other)
    frame = open_store(path).view().frame()
    assert (frame["train/loss"] == 2.0).all()


def test_a_live_reader_drops_what_it_held_when_the_file_is_replaced(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    store = open_store(path)
    write(tmp_path / "new", rows(1, 100, loss=lambda s: 9.0))
    os.replace(tmp_path / "new", path)
    assert store.refresh()
    frame = store.view().frame()
    assert len(frame) == 100 and (frame["train/loss"] == 9.0).all() and store.resets == 1


def test_a_cache_of_an_older_format_is_rebuilt(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    open_store(path)
    meta_path = cache_dir(path) / rf.METRICS_CACHE_META
    meta = json.loads(meta_path.read_text())
    meta["version"] = rf.METRICS_CACHE_VERSION - 1
    meta["malformed"] = 12345  # what a stale cache would say; a rebuilt one counts 0
    meta_path.write_text(json.dumps(meta))
    assert MetricsCache(path).load() is None  # refused, and cleared
    assert not cache_dir(path).exists()
    store = open_store(path)
    assert store.malformed == 0 and len(store.view()) == 5000
    assert json.loads(meta_path.read_text())["version"] == rf.METRICS_CACHE_VERSION


def test_a_damaged_segment_means_a_rebuild_not_an_error(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    open_store(path)
    segment = next(p for p in cache_dir(path).iterdir() if p.name.startswith("rows-"))
    segment.write_bytes(b"not arrow")
    assert open_store(path).view().frame()["step"].tolist() == list(range(1, 5001))


def test_a_torn_last_line_is_not_cached_until_it_is_complete(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    whole = rows(1, 5000)
    write(path, whole + '{"step":5001,"time":6001.0,"train/lo')
    store = open_store(path)
    assert cached_offset(path) == len(whole) and len(store.view()) == 5000
    write(path, 'ss":0.5}\n', "a")
    store.refresh()
    assert store.view().frame()["train/loss"].iloc[-1] == 0.5
    assert open_store(path, segment_rows=1).view().frame()["step"].iloc[-1] == 5001


def test_a_read_only_run_directory_opens_without_a_cache(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes through read-only permissions")
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    os.chmod(tmp_path, stat.S_IRUSR | stat.S_IXUSR)
    try:
        reader = RunReader(tmp_path)
        assert reader.metrics["step"].tolist() == list(range(1, 5001))
        assert not cache_dir(path).exists()
    finally:
        os.chmod(tmp_path, stat.S_IRWXU)


def test_a_cache_that_cannot_be_written_keeps_the_rows_in_memory(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    (tmp_path / rf.METRICS_CACHE_DIR).write_text("a file where the cache directory goes")
    store = open_store(path)
    write(path, rows(5001, 5200), "a")
    store.refresh()
    assert store.view().frame()["step"].tolist() == list(range(1, 5201))


def test_read_metrics_without_the_cache_leaves_none(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 5000))
    assert len(read_metrics(path, use_cache=False)) == 5000 and not cache_dir(path).exists()


# --- summaries ------------------------------------------------------------------------------
def random_series(n, seed=0):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=n)
    values[rng.random(n) < 0.05] = np.nan  # logged null, or rows without the series
    values[1000:1300] = np.nan  # a whole bucket without a value
    values[n // 3] = 1e6  # a spike
    return values


def test_summary_min_and_max_equal_numpys_over_every_bucket_at_every_level():
    n = 100_003  # a partial last bucket at every level
    values = random_series(n)
    steps = np.arange(1, n + 1, dtype=float)
    times = 5000.0 + steps * 0.5
    index = summary_index(summary_table({"loss": values}, steps, times))
    for level in LEVELS:
        buckets = index[("loss", level)]
        assert len(buckets) == -(-n // level)
        for i in range(len(buckets)):
            chunk = values[i * level : (i + 1) * level]
            finite = chunk[np.isfinite(chunk)]
            assert buckets.count[i] == len(finite)
            if not len(finite):
                assert np.isnan(buckets.min[i]) and np.isnan(buckets.max[i])
                continue
            assert buckets.min[i] == np.min(finite) and buckets.max[i] == np.max(finite)
            assert buckets.total[i] == pytest.approx(np.sum(finite))
            low_row = i * level + int(np.nanargmin(chunk))
            assert buckets.step_at_min[i] == steps[low_row] and buckets.time_at_min[i] == times[low_row]
            assert buckets.step_at_max[i] == steps[i * level + int(np.nanargmax(chunk))]
    assert 1e6 in index[("loss", LEVELS[-1])].max


def test_a_chart_of_a_long_run_reads_buckets_and_keeps_the_spike(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    spike = 70_001
    write(path, rows(1, 150_000, loss=lambda s: 50.0 if s == spike else 1.0 + (s % 7) / 10))
    view = open_store(path, segment_rows=40_000).view()
    drawn = view.buckets("train/loss", "step", max_points=2000)
    assert len(drawn.buckets) <= 999 and drawn.size > 1
    assert drawn.buckets.max.max() == 50.0 and spike in drawn.buckets.step_at_max
    assert drawn.buckets.min.min() == 1.0 and drawn.buckets.count.sum() == 150_000
    assert drawn.newest == (150_000.0, 151_000.0, 1.0 + (150_000 % 7) / 10)


def test_a_zoomed_in_window_reads_the_raw_rows(tmp_path):
    path = tmp_path / rf.METRICS_FILE
    write(path, rows(1, 150_000))
    view = open_store(path, segment_rows=40_000).view()
    window = view.window("step", 39_990, 40_010)  # across a segment boundary
    assert window["step"].tolist() == list(range(39_990, 40_011))
    assert np.allclose(window["train/loss"], 1.0 / window["step"])
    drawn = view.buckets("train/loss", "step", max_points=2000, low=39_990, high=40_010)
    assert drawn.size == 1 and drawn.buckets.step_at_min.tolist() == list(range(39_990, 40_011))
    by_time = view.buckets("train/loss", "time", max_points=2000, low=1000.0 + 39_990, high=1000.0 + 40_010)
    assert by_time.buckets.time_at_max.tolist() == [1000.0 + s for s in range(39_990, 40_011)]


def test_raw_buckets_match_the_rows_when_the_series_is_sparse():
    values = np.array([np.nan, 2.0, np.nan, 1.5])
    buckets = bucket_rows(values, np.arange(1.0, 5.0), np.arange(4.0), 1)
    assert buckets.count.tolist() == [0, 1, 0, 1] and buckets.max[[1, 3]].tolist() == [2.0, 1.5]


# --- the doctor through the cache --------------------------------------------------------------
def test_diagnose_gives_the_same_alerts_with_and_without_a_cache(tmp_path):
    run = tmp_path / "big"
    run.mkdir()
    n = runfiles.FULL_ROWS + 5000  # sampled: read through the cache
    extra = {s: {"val/loss": 2.0 + s / n} for s in range(250, n, 250)}
    extra.update({s: {"train/loss": None} for s in range(n - 200, n + 1)})  # diverged at the end
    write(run / rf.METRICS_FILE, rows(1, n, extra=extra))
    without = diagnose(run)
    assert cache_dir(run / rf.METRICS_FILE).is_dir()  # made by the first diagnose
    with_cache = diagnose(run)
    assert without["alerts"] and with_cache["alerts"] == without["alerts"]
    assert with_cache["run"]["metrics_rows"] == without["run"]["metrics_rows"] == n
    non_finite = [alert for alert in without["alerts"] if alert["code"] == "non_finite"]
    assert non_finite and non_finite[0]["step"] == n - 200  # found in the JSON lines, not the cache


def test_a_chart_over_more_segments_than_buckets_still_fits_its_width():
    from trainer.rundir.metrics_store import MetricsView, _FramePart

    parts = [
        _FramePart(pd.DataFrame({"step": np.arange(i * 10, i * 10 + 10), "time": 0.0, "loss": float(i)}))
        for i in range(50)
    ]
    drawn = MetricsView(parts, ["step", "time", "loss"]).buckets("loss", max_points=20)
    assert len(drawn.buckets) <= 9 and drawn.buckets.max.max() == 49.0 and drawn.buckets.count.sum() == 500
