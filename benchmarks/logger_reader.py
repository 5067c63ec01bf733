"""Figure 3: the run writer and reader next to TensorBoard's own writer and reader, in one process.

    python benchmarks/logger_reader.py           # full sizes, ~4-5 minutes on 2 cores
    python benchmarks/logger_reader.py --quick   # 100,000 rows; TensorBoard's reader timed on 100,000
                                                 # scalars and extrapolated x10 (labelled as such)

(a) writer: scalar points/s through RunWriter.log, rows of 10 scalars, timed to the last byte on
    disk (finish() included), vs torch.utils.tensorboard.SummaryWriter.add_scalar (close() included).
(b) cold load of a 1,000,000-row metrics.jsonl (written in (a)) into a DataFrame with
    trainer.rundir.reader.read_metrics (polars), vs the floor polars sets (pl.read_ndjson(path).to_pandas(),
    which drops keys first seen after row 100), vs read_metrics without polars (its pyarrow
    fallback), vs polars told to infer its schema from every row (the simple way not to lose late
    keys), vs a plain json.loads loop into a DataFrame, vs TensorBoard's EventAccumulator on
    1,000,000 scalars (into a DataFrame); plus read_metrics on a file whose keys appear late
    (val/loss every 100 rows, a series added at the middle row, as after a resume). Every load here
    is read_metrics(path, use_cache=False): a parse of every line, as on a run's first open (a later
    open reads its metrics cache instead: benchmarks/long_runs.py).
(c) incremental: RunReader.refresh() plus the .metrics frame after 1,000 rows were appended, on a
    10,000-row and on the 1,000,000-row file (the time should not depend on the file's size).
CPU seconds are printed beside wall seconds: the machine is shared, and the load average is shown.
tensorboard is a benchmark-only dependency; nothing in trainer/ imports it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from trainer.rundir import jsonl_frame
from trainer.rundir import run_format as rf
from trainer.rundir import writer as writer_module
from trainer.rundir.reader import RunReader, read_metrics
from trainer.rundir.writer import _dumps, open_run

SERIES = [rf.TRAIN_LOSS, rf.VAL_LOSS, rf.LR, rf.GRAD_NORM, rf.PRED_STD, rf.TARGET_STD, rf.VARIANCE_RATIO]
SERIES += [rf.STEPS_PER_S, rf.TOKENS_PER_S, rf.RSS_MB]  # 10 scalars per row


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def value_rows(n: int = 1000) -> list[dict]:
    """Realistic values: full-precision floats, as loss.item() gives them."""
    rng = random.Random(0)
    return [{name: rng.random() * 3 for name in SERIES} for _ in range(n)]


def bench_writer(runs_dir: Path, rows: int) -> Clock:
    values = value_rows()
    run = open_run(runs_dir, "bench", config={"benchmark": "logger_reader"})
    with Clock() as clock:
        for step in range(rows):
            run.log(step, values[step % 1000])
        run.finish()
    return clock


def bench_tensorboard_writer(log_dir: Path, points: int) -> Clock:
    from torch.utils.tensorboard import SummaryWriter

    values = value_rows()
    writer = SummaryWriter(str(log_dir))
    with Clock() as clock:
        for step in range(points // len(SERIES)):
            for name, value in values[step % 1000].items():
                writer.add_scalar(name, value, step)
        writer.close()
    return clock


def bench_json_loop(path: Path) -> Clock:
    with Clock() as clock, open(path, "rb") as f:
        frame = pd.DataFrame.from_records([json.loads(line) for line in f])
    assert len(frame) > 0
    return clock


def bench_tensorboard_reader(log_dir: Path, scalars: int) -> Clock:
    from tb_events import write_scalar_events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values = np.random.default_rng(0).random(scalars)
    write_scalar_events(log_dir, rf.TRAIN_LOSS, values)
    with Clock() as clock:
        accumulator = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})  # keep every point
        accumulator.Reload()
        frame = pd.DataFrame(accumulator.Scalars(rf.TRAIN_LOSS))
    if len(frame) != scalars or not np.allclose(frame["value"], values.astype(np.float32)):
        raise SystemExit("the generated TensorBoard event file did not read back whole; figures are void")
    return clock


def bench_incremental(run_dir: Path, appended: int, repeats: int, fast_min: int | None = None) -> list[float]:
    """Median-ready times of refresh() + .metrics after `appended` rows land, starting warm."""
    reader = RunReader(run_dir)
    step = int(reader.metrics["step"].iloc[-1]) + 1
    values = value_rows()
    saved = jsonl_frame.FAST_MIN_BYTES
    if fast_min is not None:
        jsonl_frame.FAST_MIN_BYTES = fast_min
    times = []
    try:
        for _ in range(repeats):
            lines = [_dumps({"step": step + i, "time": time.time(), **values[i % 1000]}) for i in range(appended)]
            with open(run_dir / rf.METRICS_FILE, "ab") as f:
                f.write(b"\n".join(lines) + b"\n")
            step += appended
            with Clock() as clock:
                changed = reader.refresh()
                frame = reader.metrics
            assert changed and int(frame["step"].iloc[-1]) == step - 1
            times.append(clock.wall)
    finally:
        jsonl_frame.FAST_MIN_BYTES = saved
    return times


def best_of(repeats: int, load) -> Clock:
    """The fastest of a few runs: on a shared machine the others measure the neighbours."""
    clocks = []
    for _ in range(repeats):
        with Clock() as clock:
            load()
        clocks.append(clock)
    return min(clocks, key=lambda clock: clock.wall)


def _polars():
    import polars

    return polars


def bench_without_polars(path: Path) -> Clock:
    saved, jsonl_frame.pl = jsonl_frame.pl, None
    try:
        with Clock() as clock:
            read_metrics(path, use_cache=False)
    finally:
        jsonl_frame.pl = saved
    return clock


def bench_polars_full_schema(path: Path) -> Clock:
    import polars as pl

    with Clock() as clock:
        frame = pl.read_ndjson(path, infer_schema_length=None).to_pandas()
    assert len(frame) > 0
    return clock


def write_plain_run(runs_dir: Path, run_id: str, rows: int, series: int = len(SERIES)) -> Path:
    run = open_run(runs_dir, run_id)
    values = [dict(list(row.items())[:series]) for row in value_rows()]
    for step in range(rows):
        run.log(step, values[step % 1000])
    run.finish()
    return runs_dir / run_id


def write_late_keys_run(runs_dir: Path, run_id: str, rows: int) -> Path:
    """val/loss every 100 rows only, and a series that starts at the middle row."""
    run = open_run(runs_dir, run_id)
    values = [{k: v for k, v in row.items() if k != rf.VAL_LOSS} for row in value_rows()]
    for step in range(rows):
        row = values[step % 1000]
        if step % 100 == 0:
            row = {**row, rf.VAL_LOSS: row[rf.TRAIN_LOSS]}
        if step >= rows // 2:
            row = {**row, "resumed/series": row[rf.LR]}
        run.log(step, row)
    run.finish()
    return runs_dir / run_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows; TensorBoard's reader extrapolated")
    parser.add_argument("--rows", type=int, help="rows for (a)/(b) (default 1,000,000; 100,000 with --quick)")
    parser.add_argument("--tb-write-points", type=int, default=20_000, help="points through SummaryWriter")
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    args = parser.parse_args()
    rows = args.rows or (100_000 if args.quick else 1_000_000)
    tb_scalars = 100_000 if args.quick else 1_000_000
    work = Path(tempfile.mkdtemp(prefix="logger_reader_"))
    load_before = os.getloadavg()
    try:
        results = run_all(work, rows, tb_scalars, args.tb_write_points)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print_table(results, rows, tb_scalars, load_before, os.getloadavg())


def run_all(work: Path, rows: int, tb_scalars: int, tb_points: int) -> dict:
    runs_dir = work / "runs"
    runs_dir.mkdir()
    r = {}
    print(f"(a) writing {rows:,} rows x {len(SERIES)} scalars through RunWriter ...", flush=True)
    r["writer"] = bench_writer(runs_dir, rows)
    print(f"(a) writing {tb_points:,} scalars through SummaryWriter.add_scalar ...", flush=True)
    r["tb_writer"] = bench_tensorboard_writer(work / "tb_write", tb_points)
    r["tb_points"] = tb_points // len(SERIES) * len(SERIES)
    metrics = runs_dir / "bench" / rf.METRICS_FILE
    r["file_mb"] = metrics.stat().st_size / 1e6
    print("(b) cold loads ...", flush=True)
    r["read_metrics"] = best_of(3, lambda: read_metrics(metrics, use_cache=False))
    frame = read_metrics(metrics, use_cache=False)
    assert len(frame) == rows and list(frame.columns[2:]) == SERIES
    r["polars_floor"] = best_of(3, lambda: _polars().read_ndjson(metrics).to_pandas())
    r["no_polars"] = bench_without_polars(metrics)
    r["polars_full_schema"] = bench_polars_full_schema(metrics)
    r["json_loop"] = bench_json_loop(metrics)
    late = write_late_keys_run(runs_dir, "late", rows) / rf.METRICS_FILE
    r["late_mb"] = late.stat().st_size / 1e6
    r["read_late"] = best_of(3, lambda: read_metrics(late, use_cache=False))
    frame = read_metrics(late, use_cache=False)
    assert (
        frame[rf.VAL_LOSS].notna().sum() == (rows + 99) // 100
        and frame["resumed/series"].notna().sum() == rows - rows // 2
    )
    narrow = write_plain_run(runs_dir, "narrow", rows, series=3) / rf.METRICS_FILE
    r["narrow_mb"] = narrow.stat().st_size / 1e6
    r["read_narrow"] = best_of(3, lambda: read_metrics(narrow, use_cache=False))
    assert len(read_metrics(narrow, use_cache=False)) == rows
    print(f"(b) TensorBoard EventAccumulator on {tb_scalars:,} scalars ...", flush=True)
    r["tb_reader"] = bench_tensorboard_reader(work / "tb_read", tb_scalars)
    print("(c) incremental reads ...", flush=True)
    small = write_plain_run(runs_dir, "small", 10_000)
    r["inc_small"] = bench_incremental(small, 1000, repeats=7)
    r["inc_small_json"] = bench_incremental(small, 1000, repeats=7, fast_min=1 << 40)
    r["inc_big"] = bench_incremental(runs_dir / "bench", 1000, repeats=7)
    r["inc_big_json"] = bench_incremental(runs_dir / "bench", 1000, repeats=7, fast_min=1 << 40)
    return r


def print_table(r: dict, rows: int, tb_scalars: int, load_before, load_after) -> None:
    points = rows * len(SERIES)
    writer_rate = points / r["writer"].wall
    tb_writer_rate = r["tb_points"] / r["tb_writer"].wall
    scale = 1_000_000 / tb_scalars
    tb_label = "(b) TensorBoard EventAccumulator" + ("" if scale == 1 else " [measured]")
    table = [
        ("(a) RunWriter.log, rows of 10 scalars", f"{points:,} points", r["writer"], points),
        ("(a) SummaryWriter.add_scalar", f"{r['tb_points']:,} points", r["tb_writer"], r["tb_points"]),
        ("(b) read_metrics (polars), best of 3", f"{rows:,} rows, {r['file_mb']:.0f} MB", r["read_metrics"], points),
        (
            "(b) floor: pl.read_ndjson+to_pandas, best of 3",
            f"{rows:,} rows, {r['file_mb']:.0f} MB",
            r["polars_floor"],
            points,
        ),
        ("(b) read_metrics without polars (pyarrow)", f"{rows:,} rows, {r['file_mb']:.0f} MB", r["no_polars"], points),
        (
            "(b) polars, schema from every row, to_pandas",
            f"{rows:,} rows, {r['file_mb']:.0f} MB",
            r["polars_full_schema"],
            points,
        ),
        (
            "(b) read_metrics, keys appearing late, best of 3",
            f"{rows:,} rows, {r['late_mb']:.0f} MB",
            r["read_late"],
            points,
        ),
        ("(b) json.loads loop + DataFrame", f"{rows:,} rows, {r['file_mb']:.0f} MB", r["json_loop"], points),
        (
            "(b) read_metrics, rows of 3 scalars, best of 3",
            f"{rows:,} rows, {r['narrow_mb']:.0f} MB",
            r["read_narrow"],
            3 * rows,
        ),
        (tb_label, f"{tb_scalars:,} scalars", r["tb_reader"], tb_scalars),
    ]
    print()
    print(f"{'measurement':46} {'size':>26} {'wall s':>9} {'cpu s':>8}   rate")
    for name, size, clock, n in table:
        print(f"{name:46} {size:>26} {clock.wall:9.3f} {clock.cpu:8.3f}   {n / clock.wall:,.0f} points/s")
    if scale != 1:
        name = f"(b) TensorBoard EventAccumulator [EXTRAPOLATED x{scale:.0f}]"
        print(
            f"{name:46} {'1,000,000 scalars':>26} {r['tb_reader'].wall * scale:9.1f} {r['tb_reader'].cpu * scale:8.1f}"
        )
    incremental = [
        ("(c) refresh + .metrics, 1,000 new rows", "10,000-row file", r["inc_small"]),
        ("(c) refresh + .metrics, 1,000 new rows", f"{rows:,}-row file", r["inc_big"]),
        ("(c) same with json.loads forced", "10,000-row file", r["inc_small_json"]),
        ("(c) same with json.loads forced", f"{rows:,}-row file", r["inc_big_json"]),
    ]
    for name, size, times in incremental:
        print(f"{name:46} {size:>26} {statistics.median(times):9.4f}   median of {len(times)}")

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    per_million = 1_000_000 / rows
    cold, narrow = r["read_metrics"].wall * per_million, r["read_narrow"].wall * per_million
    late = r["read_late"].wall * per_million
    scaled = "" if rows == 1_000_000 else f" (scaled from {rows:,} rows)"
    tb_cold = r["tb_reader"].wall * scale
    incremental_ms = 1000 * max(statistics.median(r["inc_small"]), statistics.median(r["inc_big"]))
    print("\ntargets:")
    print(f"  writer >= 500,000 points/s: {writer_rate:,.0f} -> {verdict(writer_rate >= 500_000)}")
    ratio = writer_rate / tb_writer_rate
    print(f"  writer >= 50x SummaryWriter.add_scalar: {ratio:,.0f}x -> {verdict(ratio >= 50)}")
    print(f"  cold load of 1,000,000 rows of 10 scalars <= 1.5 s: {cold:.2f} s{scaled} -> {verdict(cold <= 1.5)}")
    print(f"  the same with rows of 3 scalars: {narrow:.2f} s{scaled} -> {verdict(narrow <= 1.5)}")
    print(f"  the same with keys appearing late: {late:.2f} s{scaled} -> {verdict(late <= 1.5)}")
    print(f"  read_metrics over the polars floor: {r['read_metrics'].wall / r['polars_floor'].wall:.2f}x the time")
    print(f"  read_metrics vs json.loads loop: {r['json_loop'].wall / r['read_metrics'].wall:.1f}x faster")
    print(f"  read_metrics (1,000,000 rows) vs EventAccumulator (1,000,000 scalars): {tb_cold / cold:.0f}x faster")
    print(f"  incremental 1,000 rows <= 20 ms: {incremental_ms:.1f} ms (worse file) -> {verdict(incremental_ms <= 20)}")
    encoder = (
        f"orjson {writer_module.orjson.__version__}" if writer_module.orjson else "json (stdlib; pip install orjson)"
    )
    print(f"writer's JSON encoder: {encoder}")
    print(f"load average (1/5/15 min): before {fmt(load_before)}, after {fmt(load_after)}; cores: {os.cpu_count()}")


def fmt(load) -> str:
    return "/".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
