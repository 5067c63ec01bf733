"""lr_anomaly on runs it has never seen (issue 11): other programs' schedules are quiet, and a
learning rate that jumps, falls to 0 or turns non-finite where no schedule explains it is found.
Our trainer's declared schedule is checked only where our trainer wrote the run and named it."""

import json
import math

import pytest
import yaml

from trainer.config import Config
from trainer.config.schedule import lr_at
from trainer.doctor import OnlineDoctor, diagnose

PEAK = 3e-4


def hf_linear(step, total, warmup):  # transformers.get_linear_schedule_with_warmup
    if step < warmup:
        return PEAK * step / max(1, warmup)
    return PEAK * max(0.0, (total - step) / max(1, total - warmup))


def cosine_to_zero(step, total, warmup):  # transformers.get_cosine_schedule_with_warmup
    if step < warmup:
        return PEAK * step / max(1, warmup)
    progress = (step - warmup) / max(1, total - warmup)
    return PEAK * max(0.0, 0.5 * (1 + math.cos(math.pi * progress)))


def step_decay(step, total, warmup):  # torch MultiStepLR, milestones at 30/60/90%, gamma 0.1
    return PEAK * 0.1 ** sum(step >= m * total for m in (0.3, 0.6, 0.9))


def one_cycle(step, total, warmup):  # torch OneCycleLR: cosine up over 30% from peak/25, down to peak/1e4
    up = 0.3 * total
    if step < up:
        return PEAK / 25 + (PEAK - PEAK / 25) * 0.5 * (1 - math.cos(math.pi * step / up))
    progress = (step - up) / (total - up)
    return PEAK / 1e4 + (PEAK - PEAK / 1e4) * 0.5 * (1 + math.cos(math.pi * progress))


def constant(step, total, warmup):
    return PEAK


def inverse_sqrt(step, total, warmup):  # fairseq's inverse_sqrt
    return PEAK * min((step + 1) / warmup, math.sqrt(warmup / (step + 1)))


def epoch_warmup_staircase(step, total, warmup):  # timm CosineLRScheduler, t_in_epochs: epochs of total/20 steps
    epoch, epochs = step * 20 // total, 20
    if epoch < 3:  # warmup_t=3 from warmup_lr_init=1e-6
        return 1e-6 + epoch * (PEAK - 1e-6) / 3
    return 0.5 * PEAK * (1 + math.cos(math.pi * (epoch - 3) / (epochs - 3)))


SCHEDULES = [hf_linear, cosine_to_zero, step_decay, one_cycle, constant, inverse_sqrt, epoch_warmup_staircase]


def lr_alerts(lrs, config=None, trainer_wrote=False):
    """Every lr_anomaly alert of an OnlineDoctor fed (step, lr) rows."""
    doctor = OnlineDoctor(config, trainer_wrote=trainer_wrote)
    for step, lr in lrs:
        doctor.observe("metrics", {"step": step, "lr": lr})
    return [a for a in doctor.alerts if a["code"] == "lr_anomaly"]


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda f: f.__name__)
@pytest.mark.parametrize(("total", "every"), [(1000, 1), (3050, 10), (20_030, 100), (1000, 100)])
def test_other_programs_schedules_raise_nothing(schedule, total, every):
    rows = [(s, schedule(s, total, max(10, total // 20))) for s in range(every, total + 1, every)]
    # timm's per-epoch warm-up from its warmup_lr is told from a raised constant LR by the run's length
    assert not lr_alerts(rows, config={"max_steps": total}), rows[-5:]


def test_a_constant_lr_raised_by_hand_is_a_jump():
    rows = [(s, PEAK) for s in range(10, 1000, 10)] + [(s, 40 * PEAK) for s in range(1000, 1100, 10)]
    assert [a["step"] for a in lr_alerts(rows)] == [1000]


def test_a_resume_at_15x_is_a_jump_with_its_numbers():
    rows = [(s, hf_linear(s, 4000, 200)) for s in range(10, 2000, 10)]
    rows += [(s, 15 * PEAK) for s in range(2000, 2100, 10)]  # report 003: resumed at 15x
    alert = lr_alerts(rows)[0]
    assert (alert["step"], alert["severity"]) == (2000, "warning")
    assert alert["evidence"]["factor"] > 15 and "rose" in alert["message"] and "0.0045" in alert["message"]
    # warm-up, then constant at the peak, then 15x: above 3x its settled peak
    held = [(s, min(PEAK, PEAK * s / 200)) for s in range(10, 2000, 10)] + [(2000, 15 * PEAK)]
    assert [(a["step"], a["evidence"]["peak"]) for a in lr_alerts(held)] == [(2000, PEAK)]


def test_a_resume_that_lost_the_schedule_jumps_back_to_its_peak():
    rows = [(s, cosine_to_zero(s, 4000, 200)) for s in range(10, 1500, 10)]
    rows += [(s, PEAK) for s in range(1500, 4000, 10)]  # lost: back at the peak (1.4x) and constant
    alerts = lr_alerts(rows)
    assert [a["step"] for a in alerts] == [1500]
    assert 1.3 < alerts[0]["evidence"]["factor"] < 1.5


def test_a_resume_that_restarted_its_warmup_falls_where_its_trend_did_not():
    rows = [(s, cosine_to_zero(s, 4000, 200)) for s in range(10, 1500, 10)]
    rows += [(s, hf_linear(s - 1500, 4000, 200) or PEAK / 1000) for s in range(1500, 4000, 10)]
    alerts = lr_alerts(rows)
    assert alerts and alerts[0]["step"] == 1500 and "fell" in alerts[0]["message"]


def test_zero_mid_run_is_critical_but_a_decay_to_zero_at_the_end_is_not():
    rows = [(s, cosine_to_zero(s, 4000, 200)) for s in range(10, 2000, 10)]
    alerts = lr_alerts(rows + [(s, 0.0) for s in range(2000, 2100, 10)])
    assert [(a["step"], a["severity"]) for a in alerts] == [(2010, "critical")]
    assert "fell to 0" in alerts[0]["message"] and "trend did not lead" in alerts[0]["message"]
    ended = [(s, hf_linear(s, 1000, 50)) for s in range(100, 1000, 100)] + [(1000, 0.0), (1100, 0.0)]
    assert not lr_alerts(ended)


def test_a_decay_that_ends_at_zero_before_the_run_does_is_critical():
    # a linear decay sized for 1000 steps in a run that goes on: 0 from step 1000, held for 3 rows
    rows = [(s, hf_linear(s, 1000, 50)) for s in range(100, 1301, 100)]
    alerts = lr_alerts(rows)
    assert [(a["step"], a["severity"]) for a in alerts] == [(1200, "critical")]
    assert "ended before training did" in alerts[0]["message"]
    # with max_steps in the run's config, at once
    alerts = lr_alerts(rows, config={"max_steps": 3000})
    assert [(a["step"], a["severity"]) for a in alerts] == [(1000, "critical")]


def test_a_warmup_from_zero_held_for_an_epoch_is_not_an_anomaly():
    rows = [(s, 0.0) for s in range(0, 500, 10)] + [(s, PEAK * (1 + s // 500) / 5) for s in range(500, 2500, 10)]
    assert not lr_alerts(rows)


def test_an_lr_far_from_the_one_its_config_names_is_a_warning():
    above = lr_alerts([(s, 30 * PEAK) for s in range(10, 100, 10)], config={"learning_rate": PEAK})
    assert [a["step"] for a in above] == [10] and above[0]["evidence"]["config_lr"] == PEAK
    below = lr_alerts([(s, PEAK / 30) for s in range(10, 100, 10)], config={"lr": PEAK})
    assert [a["step"] for a in below] == [20] and "flat from the start" in below[0]["message"]
    warmup = [(s, PEAK * s / 1000) for s in range(10, 1000, 10)]  # starts 100x below, but rises
    assert not lr_alerts(warmup, config={"lr": PEAK})


def test_rows_before_a_config_change_are_not_held_to_the_config_it_wrote():
    """A resume with the LR raised 15x rewrites config.yaml with the new lr: the rows before the resume
    ran under the old one, so their LR, 15x below the new config's, is not "flat far below the lr
    its config names"; the jump at the resume is the anomaly."""
    rows = [(s, PEAK) for s in range(10, 1000, 10)] + [(s, 15 * PEAK) for s in range(1000, 1500, 10)]
    doctor = OnlineDoctor({"lr": 15 * PEAK}, trainer_wrote=False)
    doctor.note_restart(990)  # diagnose notes the run's last resume/fork/config change before replaying
    for step, lr in rows:
        doctor.observe("metrics", {"step": step, "lr": lr})
    (alert,) = [a for a in doctor.alerts if a["code"] == "lr_anomaly"]
    assert alert["step"] == 1000 and "resume" in alert["message"]


def test_an_lr_that_is_not_finite_is_critical():
    nan = lr_alerts([(10, 1e-3), (20, float("nan")), (30, None)])
    assert [(a["step"], a["severity"]) for a in nan] == [(30, "critical")]


def write_run(tmp_path, config: dict, lrs, status: dict | None) -> object:
    run = tmp_path / "run"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    if status is not None:
        (run / "status.json").write_text(json.dumps(status))
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "lr": v}) + "\n" for s, v in lrs))
    return run


def codes(run_dir):
    return [a["code"] for a in diagnose(run_dir)["alerts"]]


OURS = {"state": "finished", "run_id": "run", "step": 1000}


def test_our_trainers_declared_schedule_is_held_to_a_factor(tmp_path):
    cfg = Config(max_steps=1000, warmup_steps=100, schedule="warmup_cosine")
    # 1.1x off the declared cosine (another library's rounding): within the factor
    near = [(s, 1.1 * lr_at(s, cfg)) for s in range(10, 1001, 10)]
    assert "lr_anomaly" not in codes(write_run(tmp_path / "a", cfg.to_dict(), near, OURS))
    # linear decay where cosine was declared: 1.5x off by mid-run
    linear = Config(**{**cfg.to_dict(), "schedule": "warmup_linear"})
    off = [(s, lr_at(s, linear)) for s in range(10, 1001, 10)]
    alert = next(a for a in diagnose(write_run(tmp_path / "b", cfg.to_dict(), off, OURS))["alerts"])
    assert alert["code"] == "lr_anomaly" and "declared warmup_cosine schedule" in alert["message"]
    assert alert["evidence"]["factor"] > 1.2


@pytest.mark.parametrize("who", ["script", "import", "no status", "no schedule key"], ids=lambda w: w.replace(" ", "_"))
def test_a_run_that_declares_no_schedule_is_not_held_to_ours(tmp_path, who):
    cfg = Config(max_steps=1000, warmup_steps=100, schedule="warmup_cosine").to_dict()
    status = {"script": {**OURS, "writer": "api"}, "import": {**OURS, "imported_from": "tb"}}.get(who, OURS)
    if who == "no status":
        status = None
    if who == "no schedule key":
        del cfg["schedule"]
    hf = [(s, hf_linear(s, 1000, 100)) for s in range(10, 1001, 10)]  # linear to zero, not our cosine
    assert "lr_anomaly" not in codes(write_run(tmp_path, cfg, hf, status))
