"""RunReader over a whole run directory: every file, cheap refreshes, deleted runs, shared use."""

import json
import os
import shutil
import threading

from trainer.rundir import reader as reader_module
from trainer.rundir import run_format as rf
from trainer.rundir.files import atomic_write_text
from trainer.rundir.reader import RunReader
from trainer.rundir.status import read_config, read_status
from trainer.rundir.writer import open_run


def write_small_run(runs_dir, run_id="r1"):
    run = open_run(runs_dir, run_id, config={"task": "char_lm", "lr": 0.001, "model": {"n_layer": 2}})
    run.set_status("running", step=0)
    run.event("start", "started")
    for step in range(5):
        run.log(step, {"train/loss": 2.0 - step * 0.1, "lr": 0.001})
    run.log_grads(4, {"wte.weight": 0.5, "head.bias": 0.0}, {"wte.weight": 1e-3, "head.bias": 0.0})
    run.log_sample(4, text="To be or not")
    run.event(
        "alert",
        "loss is flat",
        step=4,
        code="loss_plateau",
        severity="warning",
        evidence={"window": 100, "slope": 0.0},
        remedy=[{"set": {"lr": 0.003}, "why": "the loss stopped moving"}],
    )
    run.finish()
    return runs_dir / run_id


def test_reads_every_file_of_a_run_written_by_the_writer(runs_dir):
    reader = RunReader(write_small_run(runs_dir))
    assert reader.metrics["step"].tolist() == [0, 1, 2, 3, 4]
    assert reader.status["state"] == "finished" and reader.status["run_id"] == "r1"
    assert reader.config == {"task": "char_lm", "lr": 0.001, "model": {"n_layer": 2}}
    assert reader.samples["text"].tolist() == ["To be or not"]
    assert reader.events["kind"].tolist() == ["start", "alert"]
    grads = reader.grads
    assert list(grads.columns) == [
        "step",
        "time",
        "norms/wte.weight",
        "norms/head.bias",
        "update_ratios/wte.weight",
        "update_ratios/head.bias",
    ]
    assert grads.loc[0, "norms/head.bias"] == 0.0
    (alert,) = reader.alerts
    assert alert["code"] == "loss_plateau" and alert["remedy"][0]["set"] == {"lr": 0.003}
    assert reader.malformed == {name: 0 for name in reader.malformed}


def test_refresh_reports_whether_anything_changed(runs_dir):
    run_dir = write_small_run(runs_dir)
    reader = RunReader(run_dir)
    version = reader.version
    assert reader.refresh() is False and reader.version == version
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "time": 1.0, "train/loss": 1.4}\n')
    assert reader.refresh() is True and reader.version > version
    assert reader.metrics["step"].iloc[-1] == 5


def test_status_and_config_are_parsed_again_only_when_their_file_changed(runs_dir, monkeypatch):
    run_dir = write_small_run(runs_dir)
    reader = RunReader(run_dir)
    calls = []
    monkeypatch.setattr(reader_module, "read_status", lambda d: calls.append("status") or read_status(d))
    monkeypatch.setattr(reader_module, "read_config", lambda d: calls.append("config") or read_config(d))
    for _ in range(5):
        reader.refresh()
    assert calls == []
    atomic_write_text(run_dir / "status.json", '{"state": "stopped", "step": 9}')
    assert reader.refresh() and calls == ["status"]
    assert reader.status == {"state": "stopped", "step": 9}


def test_deleted_or_renamed_run_keeps_the_last_data_without_error(runs_dir):
    run_dir = write_small_run(runs_dir)
    reader = RunReader(run_dir)
    os.rename(run_dir, runs_dir / "renamed")
    assert reader.refresh() is False
    assert len(reader.metrics) == 5 and reader.status["state"] == "finished"
    shutil.rmtree(runs_dir / "renamed")
    assert reader.refresh() is False and len(reader.metrics) == 5


def test_run_directory_that_does_not_exist_yet_reads_empty_then_fills(runs_dir):
    reader = RunReader(runs_dir / "r1")
    assert reader.metrics.empty and reader.status is None and reader.config is None
    assert reader.events.empty and reader.samples.empty and reader.grads.empty
    write_small_run(runs_dir)
    assert reader.refresh() and len(reader.metrics) == 5 and reader.config["lr"] == 0.001


def test_a_caller_modifying_its_frame_does_not_change_what_others_see(runs_dir):
    reader = RunReader(write_small_run(runs_dir))
    mine = reader.metrics
    mine["smoothed"] = 0.0
    mine.loc[0, "train/loss"] = 99.0
    reader.status["state"] = "hacked"
    theirs = reader.metrics
    assert "smoothed" not in theirs.columns and theirs.loc[0, "train/loss"] == 2.0
    assert reader.status["state"] == "finished"


def test_one_reader_shared_by_threads_gives_consistent_snapshots(runs_dir):
    run = open_run(runs_dir, "live")
    reader = RunReader(runs_dir / "live")
    problems = []
    done = threading.Event()

    def session():
        while not done.is_set():
            reader.refresh()
            snap = reader.snapshot()
            steps = snap.metrics["step"].tolist()
            if steps != list(range(len(steps))):
                problems.append(steps[-5:])

    sessions = [threading.Thread(target=session) for _ in range(3)]
    for thread in sessions:
        thread.start()
    for step in range(3000):
        run.log(step, {"train/loss": 1.0})
        if step % 300 == 0:
            run.flush()
    run.finish()
    done.set()
    for thread in sessions:
        thread.join()
    reader.refresh()
    assert problems == [] and reader.metrics["step"].tolist() == list(range(3000))


def test_snapshot_reads_only_when_the_token_moved_and_at_most_every_min_refresh_s(runs_dir):
    run_dir = write_small_run(runs_dir)
    reader = RunReader(run_dir, min_refresh_s=3600)
    first = reader.snapshot("token-1")
    assert reader.reads == 1 and first.exists and first.run_id == "r1" and len(first.metrics) == 5
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "time": 1.0, "train/loss": 1.4}\n')
    assert reader.snapshot("token-1") is first  # same token: nothing read
    assert reader.snapshot("token-2") is first and reader.reads == 1  # too soon after the last read
    reader.min_refresh_s = 0.0
    second = reader.snapshot("token-2")  # the token was not taken while throttled: it reads now
    assert reader.reads == 2 and len(second.metrics) == 6 and second.version != first.version
    assert reader.snapshot("token-2") is second
    # Versions are unique in the process: another reader of the same run never repeats an old one.
    assert RunReader(run_dir).version not in (first.version, second.version)


def test_snapshot_of_a_deleted_run_says_so_and_keeps_the_last_data(runs_dir):
    run_dir = write_small_run(runs_dir)
    reader = RunReader(run_dir, min_refresh_s=0.0)
    assert reader.snapshot().exists
    shutil.rmtree(run_dir)
    gone = reader.snapshot()
    assert not gone.exists and "no longer exists" in gone.error
    assert len(gone.metrics) == 5 and gone.status["state"] == "finished"
    write_small_run(runs_dir)  # a new run under the same name
    back = reader.snapshot()
    assert back.exists and back.error == "" and back.metrics["step"].tolist() == [0, 1, 2, 3, 4]


def test_read_status_and_read_config_return_none_for_missing_or_broken_files(tmp_path):
    assert read_status(tmp_path) is None and read_config(tmp_path) is None
    (tmp_path / "status.json").write_text("{not json")
    (tmp_path / "config.yaml").write_text("!!python/object:os.system {}\n")  # safe_load refuses it
    assert read_status(tmp_path) is None and read_config(tmp_path) is None


def test_big_appends_wait_for_a_torn_last_line_find_new_series_and_restart_after_a_resume(runs_dir):
    """Blocks this big go through the bulk parser (polars), not json.loads: the same guarantees."""
    from trainer.rundir import jsonl_frame
    from trainer.rundir.reader import read_metrics
    from trainer.rundir.writer import truncate_after_step

    path = runs_dir / "big" / "metrics.jsonl"
    run = open_run(runs_dir, "big")
    for step in range(3000):
        run.log(step, {"train/loss": 1.0, "lr": 0.1})
    run.finish()
    with open(path, "ab") as f:
        f.write(b'{"step":3000,"time":1.0,"train/loss":0.5,"lr":0.1,"val/lo')  # torn: the writer died here
    assert path.stat().st_size > jsonl_frame.FAST_MIN_BYTES
    reader = RunReader(runs_dir / "big")
    assert len(reader.metrics) == 3000 and reader.malformed["metrics.jsonl"] == 0
    rows = [b'ss":0.25}']  # the torn line completed, then rows with a new series and nulls
    rows += [b'{"step":%d,"time":1.0,"train/loss":null,"lr":0.1,"new/series":%d}' % (s, s) for s in range(3001, 6000)]
    with open(path, "ab") as f:
        f.write(b"\n".join(rows) + b"\n")
    assert reader.refresh()
    frame = reader.metrics
    assert frame["step"].tolist() == list(range(6000)) and reader.malformed["metrics.jsonl"] == 0
    assert frame.loc[3000, "val/loss"] == 0.25 and frame.loc[5999, "new/series"] == 5999.0
    assert frame["train/loss"].iloc[3001:].isna().all() and frame["new/series"].iloc[:3001].isna().all()
    assert truncate_after_step(path, 1999) > 0  # a resume from step 1999 replaces the file
    assert reader.refresh() and reader.resets == 1
    assert reader.metrics["step"].tolist() == list(range(2000))
    assert list(reader.metrics.columns) == list(read_metrics(path).columns) == ["step", "time", "train/loss", "lr"]


def test_a_version_1_run_opens_in_the_reader_the_listing_and_the_doctor(runs_dir):
    """Format 2 renamed a forecaster's throughput; a run written before (version 1) still opens."""
    from trainer import runs
    from trainer.doctor import diagnose

    run_dir = runs_dir / "old"
    run_dir.mkdir()
    status = {"format_version": 1, "run_id": "old", "state": "finished", "step": 3, "task": "regression"}
    (run_dir / rf.STATUS_FILE).write_text(json.dumps(status))
    rows = [{"step": s, "time": float(s), "train/loss": 1.0 / s, "speed/tokens_per_s": 1500.0} for s in (1, 2, 3)]
    (run_dir / rf.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    reader = RunReader(run_dir)
    assert reader.metrics["speed/tokens_per_s"].tolist() == [1500.0] * 3 and reader.status["format_version"] == 1
    assert [i.state for i in runs.list_runs(runs_dir)] == ["finished"]
    assert diagnose(run_dir)["run"]["step"] == 3
