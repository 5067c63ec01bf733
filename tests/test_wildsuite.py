"""The second scenario generator (trainer.doctor.wildsuite): every shape writes a run that follows
docs/run-format.md and that diagnose reads, its labels are consistent, a seed fixes the run, and the
scorer counts what docs/doctor.md says. Nothing here asserts what the doctor detects."""

from __future__ import annotations

import filecmp
import json
import math

import pytest
import yaml

from trainer.doctor.diagnose import diagnose
from trainer.doctor.registry import CODES
from trainer.doctor.wildsuite import FAILING, HEALTHY, NAMES, evaluate, make, write_run
from trainer.errors import RunExists
from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records
from trainer.rundir.reader import read_metrics

LABEL_SEEDS = range(6)


@pytest.mark.parametrize("name", NAMES)
def test_every_shape_writes_a_run_that_diagnose_reads(name, runs_dir):
    run = make(name, 0)
    path = write_run(run, runs_dir, f"{name}-0")
    result = diagnose(path)
    assert result["run"]["metrics_rows"] > 0
    assert result["run"]["has_config"] == (run.config is not None)
    assert all(a["severity"] in rf.SEVERITIES for a in result["alerts"])


@pytest.mark.parametrize("name", NAMES)
def test_labels_are_consistent(name):
    for seed in LABEL_SEEDS:
        run = make(name, seed)
        train_steps = [r["step"] for r in run.metrics if rf.TRAIN_LOSS in r]
        assert run.max_steps >= train_steps[-1] and run.log_interval >= 1
        if name in HEALTHY:
            assert (run.code, run.onset, run.evidence) == (None, None, None)
            continue
        assert run.code in CODES, f"{name}: {run.code} is not a code the doctor has"
        assert 0 <= run.onset <= run.max_steps, (name, seed)
        assert run.onset <= run.evidence <= run.max_steps, (name, seed)
        if run.sudden:
            assert run.evidence == run.onset
        else:  # a slow failure takes time to become plain
            assert run.evidence > run.onset, (name, seed)


def test_there_is_a_healthy_and_a_failing_shape_for_every_code():
    codes = {make(name, 0).code for name in FAILING}
    assert codes == set(CODES), f"codes without a wild failure: {sorted(set(CODES) - codes)}"
    assert len(HEALTHY) >= 15


def _check_record(record: dict, kind: str) -> None:
    assert isinstance(record["step"], int) and isinstance(record["time"], float)
    if kind == rf.METRICS_FILE:  # flat: numbers or null
        assert all(v is None or isinstance(v, (int, float)) for v in record.values())
    elif kind == rf.GRADS_FILE:
        assert set(record["norms"]) == set(record["update_ratios"])
        assert all(v >= 0.0 for v in record["norms"].values())
    elif kind == rf.SAMPLES_FILE:
        assert isinstance(record.get("text"), str) or len(record["pred"]) == len(record["target"]) > 0
    else:
        assert record["kind"] in rf.EVENT_KINDS and isinstance(record["message"], str)


@pytest.mark.parametrize(
    "name",
    ["nan_loss", "inf_grad", "fp16_overflow", "token_collapse", "variance_collapse", "dead_from_start", "resume_gap"],
)
def test_written_files_follow_the_run_format(name, runs_dir):
    for seed in range(3):
        path = write_run(make(name, seed), runs_dir, f"{name}-{seed}")
        for kind in rf.JSONL_FILES:
            file = path / kind
            if not file.exists():
                continue
            lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
            records = read_records(file)
            assert len(records) == len(lines) and all(line.endswith("\n") for line in lines)
            for record in records:
                _check_record(record, kind)
            steps = [r["step"] for r in records]
            assert steps == sorted(steps) or kind == rf.EVENTS_FILE
        assert (
            "NaN" not in (path / rf.METRICS_FILE).read_text() and "Infinity" not in (path / rf.METRICS_FILE).read_text()
        )
        frame = read_metrics(path / rf.METRICS_FILE)
        assert len(frame) == len(read_records(path / rf.METRICS_FILE))
        status = json.loads((path / rf.STATUS_FILE).read_text()) if (path / rf.STATUS_FILE).exists() else None
        assert status is None or (status["state"] in rf.STATES and status["format_version"] == rf.FORMAT_VERSION)
        config = path / rf.CONFIG_FILE
        assert not config.exists() or isinstance(yaml.safe_load(config.read_text()), dict)


def test_non_finite_values_are_written_as_null(runs_dir):
    run = make("nan_loss", 0)
    rows = read_records(write_run(run, runs_dir, "nan") / rf.METRICS_FILE)
    after = [r for r in rows if r["step"] >= run.onset and rf.TRAIN_LOSS in r]
    assert after and all(r[rf.TRAIN_LOSS] is None for r in after)
    assert all(r[rf.TRAIN_LOSS] is not None for r in rows if r["step"] < run.onset and rf.TRAIN_LOSS in r)


def test_the_same_seed_gives_the_same_files(tmp_path):
    for name in ("explode_slow", "resume_gap", "token_collapse_slow"):
        a = write_run(make(name, 7), tmp_path / "a", "r")
        b = write_run(make(name, 7), tmp_path / "b", "r")
        c = write_run(make(name, 8), tmp_path / "c", "r")
        files = sorted(p.name for p in a.iterdir())
        assert files == sorted(p.name for p in b.iterdir())
        assert filecmp.cmpfiles(a, b, files, shallow=False)[0] == files
        assert (a / rf.METRICS_FILE).read_bytes() != (c / rf.METRICS_FILE).read_bytes()
        for d in (a, b, c):
            d.rename(d.with_name(f"{name}-{d.parent.name}"))


def test_runs_without_config_yaml_diagnose(runs_dir):
    for seed in range(3):
        run = make("no_config", seed)
        assert run.config is None
        path = write_run(run, runs_dir, f"nc-{seed}")
        assert not (path / rf.CONFIG_FILE).exists()
        assert diagnose(path)["run"]["has_config"] is False


def test_a_resume_jumps_the_clock_while_steps_go_on():
    for seed in range(4):
        run = make("resume_gap", seed)
        rows = [r for r in run.metrics if rf.TRAIN_LOSS in r]
        gaps = [(b["time"] - a["time"], b["step"] - a["step"]) for a, b in zip(rows, rows[1:])]
        assert max(g for g, _ in gaps) >= 1200 and {s for _, s in gaps} == {run.log_interval}
        assert any(e["kind"] == "resume" for e in run.events)


def test_hf_linear_decay_ends_at_exactly_zero():
    ends = [[r[rf.LR] for r in make("hf_linear", seed).metrics if rf.LR in r][-1] for seed in range(5)]
    assert 0.0 in ends and all(e >= 0 for e in ends)


def test_slow_explosion_is_tenfold_by_its_evidence_and_hundredfold_by_the_end():
    for seed in range(5):
        run = make("explode_slow", seed)
        norms = {r["step"]: r[rf.GRAD_NORM] for r in run.metrics if rf.GRAD_NORM in r}
        onset, end = math.log(norms[run.onset]), math.log(norms[max(norms)])
        assert end - onset > math.log(30), seed  # 100x clean, less one-row noise


def test_a_write_refuses_an_existing_run(runs_dir):
    write_run(make("constant_lr", 0), runs_dir, "x")
    with pytest.raises(RunExists):
        write_run(make("constant_lr", 0), runs_dir, "x")


def test_unknown_shape_names_the_shapes():
    with pytest.raises(KeyError, match="explode_slow"):
        make("explode_fast", 0)


def _alert(code: str, step: int, severity: str = "warning") -> dict:
    return {"code": code, "step": step, "severity": severity}


def test_scoring_sudden_failure_counts_log_intervals_from_onset():
    run = make("explode", 0)
    late = run.onset + 3 * run.log_interval
    score = evaluate(run, [_alert("exploding_gradients", late), _alert("slowdown", run.onset + 1, "info")])
    assert score["detected"] and score["delay"] == 3 and score["false_alarms"] == []


def test_scoring_slow_failure_counts_a_fraction_of_the_run_from_evidence():
    run = make("explode_slow", 0)
    score = evaluate(run, [_alert("exploding_gradients", run.evidence + run.max_steps // 10)])
    assert score["detected"] and score["delay"] == pytest.approx((run.max_steps // 10) / run.max_steps)


def test_scoring_alarms_before_onset_are_false_and_wrong_codes_do_not_detect():
    run = make("explode", 0)
    score = evaluate(run, [_alert("exploding_gradients", run.onset - 1), _alert("loss_spike", run.onset, "critical")])
    assert not score["detected"] and [a["step"] for a in score["false_alarms"]] == [run.onset - 1]


def test_scoring_any_warning_on_a_healthy_run_is_a_false_alarm():
    run = make("hf_linear", 0)
    score = evaluate(run, [_alert("lr_anomaly", 10), _alert("slowdown", 20, "info")])
    assert score["detected"] is None and [a["code"] for a in score["false_alarms"]] == ["lr_anomaly"]


def test_scoring_counts_a_sudden_delay_in_rows_of_the_series_that_shows_it():
    run = make("val_below_train", 1)
    assert run.seen_every > run.log_interval  # evals are sparser than train rows
    score = evaluate(run, [_alert("val_below_train", run.onset + 2 * run.seen_every)])
    assert score["delay_rows"] == 2 and score["delay"] == 2 * run.seen_every / run.log_interval
