"""slowdown tells a starved trainer from one doing more work per step.

Seen on this 2-core machine: a second run started beside the default one took it from 33 to 16
steps/s while its own CPU use fell from 200% to 148%; the alert proposed half the micro-batch
"to relieve memory pressure", which cannot help a trainer that is waiting for a core.
"""

from trainer.config import Config
from trainer.doctor import OnlineDoctor


def _slowdown_alerts(cpu_after: float) -> list[dict]:
    """A steady run at 33 steps/s and 200% CPU that halves its speed from step 1500 on."""
    doctor = OnlineDoctor(Config(max_steps=2000).to_dict())
    for step in range(10, 2001, 10):
        wobble = ((step * 7919) % 11 - 5) / 5  # deterministic noise in [-1, 1]
        slow = step > 1500
        doctor.observe(
            "metrics",
            {
                "step": step,
                "speed/steps_per_s": (16.0 if slow else 33.0) + 0.5 * wobble,
                "sys/cpu_percent": (cpu_after if slow else 200.0) + 5 * wobble,
                "sys/rss_mb": 460.0,
            },
        )
    return [a for a in doctor.alerts if a["code"] == "slowdown"]


def test_a_starved_trainer_is_told_so_and_offered_no_config_change():
    (alert,) = _slowdown_alerts(cpu_after=145.0)
    assert "CPU use fell with it" in alert["message"] and "starved" in alert["message"]
    assert alert["evidence"]["cpu_percent_now"] < 0.8 * alert["evidence"]["cpu_percent_baseline"]
    assert alert["remedy"] == []


def test_a_slowdown_at_full_cpu_keeps_the_micro_batch_remedy():
    (alert,) = _slowdown_alerts(cpu_after=198.0)
    assert "starved" not in alert["message"] and "cpu_percent_now" not in alert["evidence"]
    assert alert["remedy"][0]["set"] == {"batch_size": 6, "grad_accum_steps": 2}
