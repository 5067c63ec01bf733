"""diagnose() on run directories of every shape, online/offline agreement, and the markdown report."""

import json

import pytest

from trainer.doctor import OnlineDoctor, diagnose, to_markdown
from trainer.doctor import scenarios as ds
from trainer.doctor.outputs import text_stats
from trainer.errors import RunNotFound
from trainer.rundir.writer import open_run


def _write_metrics(run_dir, rows):
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def _loss_rows(n, nan_at=(), interval=10):
    rows = []
    for i in range(1, n + 1):
        step = i * interval
        loss = 2.0 + 0.02 * ((i * 7919) % 13 - 6) / 6
        rows.append(
            {
                "step": step,
                "time": float(step),
                "train/loss": None if i in nan_at else loss,
                "lr": 1e-3,
                "grad/norm": 0.5,
            }
        )
    return rows


def test_only_metrics_without_config_still_finds_non_finite(tmp_path):
    _write_metrics(tmp_path / "other-program", _loss_rows(100, nan_at=range(60, 101)))
    result = diagnose(tmp_path / "other-program")
    assert set(result) >= {"run", "alerts", "summary", "checked", "unchecked"}
    assert result["run"]["has_config"] is False
    alert = next(a for a in result["alerts"] if a["code"] == "non_finite")
    assert alert["severity"] == "critical" and alert["step"] == 600
    assert "critical" in result["summary"]


def test_non_finite_fires_again_after_a_recovery(tmp_path):
    _write_metrics(tmp_path / "r", _loss_rows(100, nan_at={30, 31, 70}))
    steps = [a["step"] for a in diagnose(tmp_path / "r")["alerts"] if a["code"] == "non_finite"]
    assert steps == [300, 700]


def test_healthy_flat_run_is_checked_and_listed_healthy(tmp_path):
    _write_metrics(tmp_path / "r", _loss_rows(50))
    result = diagnose(tmp_path / "r")
    assert not [a for a in result["alerts"] if a["severity"] != "info"]
    assert "non_finite" in {c["code"] for c in result["checked"]}
    assert "token_collapse" in result["unchecked"]


def test_empty_or_missing_run_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    assert "nothing to diagnose" in diagnose(tmp_path / "empty")["summary"]
    with pytest.raises(RunNotFound):
        diagnose(tmp_path / "absent")


def test_run_written_by_the_writer_with_a_nan_loss(tmp_path):
    run = open_run(tmp_path, "w1", config={"lr": 1e-3, "max_steps": 400})
    for step in range(10, 410, 10):
        run.log(step, {"train/loss": float("nan") if step >= 300 else 2.0, "lr": 1e-3})
    run.finish("failed")
    result = diagnose(tmp_path / "w1")
    assert result["run"]["state"] == "failed"
    assert [a["step"] for a in result["alerts"] if a["code"] == "non_finite"] == [300]


def test_online_and_offline_give_the_same_alerts(tmp_path):
    s = ds.make("variance_collapse", 1)
    offline = diagnose(ds.write_run(s, tmp_path))["alerts"]
    doctor = OnlineDoctor(s.config)
    records = sorted(
        [(r["step"], 1, i, "metrics", r) for i, r in enumerate(s.metrics)]
        + [(r["step"], 0, i, "grads", r) for i, r in enumerate(s.grads)]
        + [(r["step"], 2, i, "samples", r) for i, r in enumerate(s.samples)]
    )
    online = [a for *_, kind, record in records for a in doctor.observe(kind, record)]
    assert online == offline and any(a["code"] == "variance_collapse" for a in online)


def test_a_long_run_is_sampled_and_keeps_its_nan(tmp_path):
    _write_metrics(tmp_path / "long", _loss_rows(45_000, nan_at={30_000}))
    result = diagnose(tmp_path / "long")
    assert result["run"]["sample_stride"] == 5 and result["run"]["metrics_rows"] == 45_000
    # a loss flat at 2.0 from its first row for 450,000 steps at lr 1e-3 is also a plateau (issue 11:
    # a loss that never drops is one), found on the sampled rows
    alerts = [a for a in result["alerts"] if a["severity"] != "info" and a["code"] != "loss_plateau"]
    assert [a["code"] for a in alerts] == ["non_finite"]
    assert alerts[0]["step"] == 300_000


def test_markdown_report_has_findings_causes_actions_and_checks(tmp_path):
    s = ds.make("loss_plateau", 0)
    md = to_markdown(diagnose(ds.write_run(s, tmp_path, "plateau-run")))
    for heading in (
        "## Summary",
        "## Findings",
        "## Likely causes",
        "## Action items",
        "## What was checked and found healthy",
    ):
        assert heading in md
    assert "python -m trainer fork plateau-run --from best --run-id plateau-run-fix --set lr=0.003" in md
    assert "| evidence | value |" in md


def test_punctuation_samples_collapse_and_shakespeare_does_not():
    collapsed = text_stats(":::,:,,:,,,::,:,::::,::,,:, ,,,,,,,,,:::,:,:,::, him:,,,'::,,,,:")
    healthy = text_stats(ds.CORPUS[1000:1200])
    assert collapsed["punctuation_share"] > 0.9 and collapsed["entropy"] < 1.2
    assert healthy["punctuation_share"] < 0.2 and healthy["entropy"] > 2.5


def test_dead_parameters_are_named(tmp_path):
    s = ds.make("dead_parameters", 0)
    alert = next(a for a in diagnose(ds.write_run(s, tmp_path))["alerts"] if a["code"] == "dead_parameters")
    assert alert["evidence"]["dead"] == ["celestial_key_projection.weight", "celestial_query_projection.weight"]


def test_variance_collapse_message_carries_the_report_numbers(tmp_path):
    s = ds.make("variance_collapse", 0)
    alert = next(a for a in diagnose(ds.write_run(s, tmp_path))["alerts"] if a["code"] == "variance_collapse")
    assert "target_std 0.86" in alert["message"] and "ratio 1:" in alert["message"]
    assert alert["remedy"][0]["set"]["lr"] == 0.003


def test_online_alerts_reach_events_jsonl_through_the_engine_hook(tmp_path):
    from trainer.config import Config
    from trainer.training.doctor_hook import DoctorHook

    cfg = Config(max_steps=400, schedule="constant")
    run = open_run(tmp_path, "live", config=cfg.to_dict())
    hook = DoctorHook(cfg, run)
    for step in range(10, 210, 10):
        hook.observe("metrics", {"step": step, "train/loss": None if step == 150 else 2.0, "lr": 1e-3})
    run.finish()
    events = [json.loads(line) for line in (tmp_path / "live" / "events.jsonl").read_text().splitlines()]
    alerts = [e for e in events if e["kind"] == "alert"]
    assert [(a["code"], a["severity"], a["step"]) for a in alerts] == [("non_finite", "critical", 150)]
    assert alerts[0]["remedy"] and hook.stop_requested.startswith("non_finite")
