"""The labelled scenario suite (trainer/doctor/scenarios): every failure found with its code and
on time, no warning on healthy runs, no alert of any code before a failure's onset.

5 seeds per scenario; each seed draws run length, logging interval, noise and onset.
"""

import pytest

from trainer.doctor import scenarios as ds

SEEDS = range(5)


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    rows = ds.run_suite(tmp_path_factory.mktemp("doctor-suite"), seeds=SEEDS)
    return {name: [r for r in rows if r["name"] == name] for name in ds.ALL}


def _describe(r):
    return f"{r['name']} seed {r['seed']}: " + "; ".join(
        f"{a['severity']} {a['code']}@{a['step']}" for a in r["result"]["alerts"]
    )


def test_every_labelled_scenario_has_a_shape_and_every_shape_a_label():
    assert set(ds.SHAPES) == set(ds.ALL) and len(ds.ALL) == len(set(ds.ALL))
    assert set(ds.SUDDEN) <= set(ds.FAILURES)
    with pytest.raises(KeyError, match="the scenarios are"):
        ds.make("loss_wobble", 0)


@pytest.mark.parametrize("name", ds.HEALTHY)
def test_healthy_run_raises_no_warning(suite, name):
    for r in suite[name]:
        assert not r["false_alarms"], _describe(r)


@pytest.mark.parametrize("name", list(ds.FAILURES))
def test_failure_is_detected_with_its_code_on_time(suite, name):
    for r in suite[name]:
        assert r["detected"], "missed: " + _describe(r)
        assert r["on_time"], f"late by {r['delay']} steps: " + _describe(r)
        assert not r["false_alarms"], "alert before onset: " + _describe(r)


def test_sudden_failures_fire_within_two_log_intervals(suite):
    for name in ds.SUDDEN:
        for r in suite[name]:
            assert r["delay"] <= 2 * r["scenario"].log_interval, _describe(r)


def test_healthy_curriculum_ramp_gives_an_info_at_most(suite):
    notes = [a for r in suite["healthy_curriculum"] for a in r["result"]["alerts"]]
    assert notes, "the paced rise of a curriculum should be noted as info"
    assert {a["severity"] for a in notes} == {"info"}
    assert all(a["code"] == "loss_rising" and "planned pace" in a["message"] for a in notes)


def test_too_fast_curriculum_is_a_warning_naming_the_pace(suite):
    for r in suite["curriculum_too_fast"]:
        alert = next(a for a in r["result"]["alerts"] if a["code"] == "loss_rising")
        assert alert["severity"] == "warning"
        assert "faster than the model can follow" in alert["message"]
        assert alert["evidence"]["pace_ratio"] > 2
        assert alert["remedy"][0]["set"]["curriculum.ramp"] == "linear"
        # a linear ramp over the same steps: its peak pace is its average, not more than 2x it
        assert (
            alert["remedy"][0]["set"]["curriculum.preschool_steps"]
            == r["scenario"].config["curriculum"]["preschool_steps"]
        )
        assert alert["remedy"][0]["start"] == "new"


def test_each_failure_fires_once_per_episode(suite):
    for name, code in ds.FAILURES.items():
        for r in suite[name]:
            fired = [a for a in r["result"]["alerts"] if a["code"] == code and a["severity"] != "info"]
            assert len(fired) == 1, _describe(r)


def test_every_remedy_is_a_valid_fork_override_of_the_runs_config(suite):
    from trainer.config import Config, apply_overrides, from_dict

    checked = 0
    for rows in suite.values():
        for r in rows:
            for alert in r["result"]["alerts"]:
                for remedy in alert["remedy"]:
                    assert remedy["why"] and remedy["kind"] in ("config", "code", "none")
                    assert bool(remedy["set"]) == (remedy["kind"] == "config")
                    for base in (r["scenario"].config, Config().to_dict()):
                        from_dict(apply_overrides(base, remedy["set"]))
                    checked += 1
    assert checked > 50
