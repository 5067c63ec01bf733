"""Slow failures judged on their trend (issue 11): a gradient norm that climbs steadily and a val
loss that creeps up are found early when the evidence is strong, and noise alone raises nothing."""

import json
import math
import random
from pathlib import Path

from trainer.doctor import OnlineDoctor
from trainer.doctor.base import line_deviations


def alerts_of(code, rows, config=None):
    doctor = OnlineDoctor(config)
    for row in rows:
        doctor.observe("metrics", row)
    return [a for a in doctor.alerts if a["code"] == code]


def grad_rows(norm_at, steps=4000, every=10, seed=0):
    rng = random.Random(seed)
    return [
        {"step": s, "train/loss": 2.0 * (1 + rng.gauss(0, 0.02)), "grad/norm": norm_at(s) * math.exp(rng.gauss(0, 0.3))}
        for s in range(every, steps + 1, every)
    ]


def test_a_steady_gradient_climb_is_found_before_it_reaches_10x():
    # 10x over 15% of the run from step 2000 (600 steps): the running median follows it, its low does not
    alerts = alerts_of("exploding_gradients", grad_rows(lambda s: 0.5 * 10 ** (max(0, s - 2000) / 600)))
    assert len(alerts) == 1
    alert = alerts[0]
    assert 2000 + 600 * math.log10(4) <= alert["step"] < 2000 + 600 * math.log10(8), alert["message"]
    assert alert["evidence"]["factor"] >= 4 and "lowest running median" in alert["message"]


def test_heavy_tailed_gradients_and_a_slow_healthy_drift_are_not_a_climb():
    for seed in range(10):
        rng = random.Random(seed)

        def norm_at(step, rng=rng):  # 2x drift over the run, one row in 20 at 2-4x (a spike above 10x is a jump)
            return 0.5 * 2 ** (step / 4000) * (rng.uniform(2, 4) if rng.random() < 0.05 else 1.0)

        assert not alerts_of("exploding_gradients", grad_rows(norm_at, seed=seed)), seed


def test_one_batch_with_a_huge_gradient_is_not_an_explosion_but_two_rows_are():
    """A 40x norm on one row (a hard batch that clipping absorbs; the norm is back on the next row) is
    no explosion; the same jump held on a second row is, reported at that row."""
    assert not alerts_of("exploding_gradients", grad_rows(lambda s: 0.5 * (40 if s == 2000 else 1)))
    (alert,) = alerts_of("exploding_gradients", grad_rows(lambda s: 0.5 * (40 if s >= 2000 else 1)))
    assert alert["step"] == 2010 and "jumped" in alert["message"]


def test_a_noisy_norm_drifting_up_late_is_not_a_climb():
    """log-noise 0.6 (a small batch) and a 2.5x drift over the run's second half: the median of 7 rows
    and the least of the running medians sit 4x apart by noise alone; the level must clear the
    factor by 3 sd of itself."""
    for seed in range(6):
        rng = random.Random(seed)
        rows = [
            {"step": s, "train/loss": 2.0, "grad/norm": 0.5 * 2.5 ** max(0, s / 2000 - 1) * math.exp(rng.gauss(0, 0.6))}
            for s in range(5, 4001, 5)
        ]
        assert not alerts_of("exploding_gradients", rows), seed


def test_a_sudden_fall_of_the_gradient_norm_is_found_within_two_log_intervals():
    """A 300x fall at step 2000: the median of 10 rows moves only half a window later; three rows in a
    row that far below the established level are conclusive at once."""
    (alert,) = alerts_of("vanishing_gradients", grad_rows(lambda s: 0.5 / (300 if s >= 2000 else 1)))
    assert 2000 <= alert["step"] <= 2000 + 2 * 10, alert["message"]
    # a 30x fall is not vanishing, however sudden
    assert not alerts_of("vanishing_gradients", grad_rows(lambda s: 0.5 / (30 if s >= 2000 else 1)))


def val_rows(val_at, noise, seed, steps=6000, every=10, eval_every=150):
    """A train loss falling slowly and evals of val_at(step) with relative noise."""
    rng = random.Random(seed)
    rows = []
    for s in range(every, steps + 1, every):
        rows.append({"step": s, "train/loss": 1.6 - 0.1 * s / steps + rng.gauss(0, 0.02)})
        if s % eval_every == 0:
            rows.append({"step": s, "val/loss": val_at(s) * (1 + rng.gauss(0, noise))})
    return rows


def test_a_val_creep_is_found_soon_after_it_clears_the_noise():
    # +5% from step 2000 to 6000 with 0.4% eval noise: 2% is reached at step 3600
    def creep(s):
        return 1.7 * (1 + 0.05 * max(0, s - 2000) / 4000)

    for seed in range(5):
        alerts = alerts_of("overfitting", val_rows(creep, 0.004, seed))
        assert alerts and 2000 < alerts[0]["step"] <= 4200, (seed, [a["step"] for a in alerts])


def test_a_noisy_flat_val_is_not_overfitting():
    # 2% eval noise on a flat val: the best is the lowest of 40 medians of 3, and a fresh median sits
    # 3 sd above it now and then. The trend judged against the larger of two noise reads fired on 2 of
    # these 200 seeds (104, 138; and on 4 of 300); against the pooled read, on 1 (1 of 300 too)
    alarms = [seed for seed in range(200) if alerts_of("overfitting", val_rows(lambda s: 1.7, 0.02, seed))]
    assert len(alarms) <= 1, alarms


def loss_rising_alerts(seed, rise_from=None, steps=3000, noise=0.2, rho=0.3):
    """A loss logged every step with 20% noise per row that drifts over a few rows (AR(1), as a small
    batch's data order makes it): flat at 1.0, or from rise_from climbing 50% over 600 steps."""
    rng = random.Random(seed)
    doctor = OnlineDoctor(None)
    drift = 0.0
    for step in range(1, steps + 1):
        drift = rho * drift + math.sqrt(1 - rho * rho) * rng.gauss(0, 1)
        clean = 1.0 if rise_from is None or step < rise_from else 1.0 + 0.5 * min(1.0, (step - rise_from) / 600)
        doctor.observe("metrics", {"step": step, "train/loss": clean * (1 + noise * drift)})
    return [a for a in doctor.alerts if a["code"] == "loss_rising"]


def test_a_noisy_flat_loss_is_rarely_rising_and_a_real_climb_is_found():
    """Issue 11: the level against its best (the lowest of thousands of medians) cleared 3 x noise on
    every one of these flat runs, several times each; the trend since the best must show the rise too.
    A residual: a deep noise trough as the best still makes a short upward line now and then."""
    flat = [len(loss_rising_alerts(seed, steps=2000)) for seed in range(6)]
    assert sum(flat) <= 4 and sum(n > 0 for n in flat) <= 2, flat
    for seed in range(6):
        assert any(1500 <= a["step"] <= 2400 for a in loss_rising_alerts(seed, rise_from=1500, steps=2400)), seed


def test_eval_noise_is_read_the_same_at_any_spacing_and_a_trend_is_not_noise():
    # Other programs evaluate at irregular steps (epochs of changing length, a timer): a straight
    # line read through uneven evals has second differences, which read the trend as noise.
    steps = [0, 60, 360, 480, 930, 1020, 1080, 1380]
    assert max(abs(d) for d in line_deviations([(s, 2.0 + 0.001 * s) for s in steps])) < 1e-12
    evenly = [(100 * i, v) for i, v in enumerate([1.0, 1.3, 0.9, 1.1, 1.4, 0.8])]
    second = [a - 2 * b + c for (_, a), (_, b), (_, c) in zip(evenly, evenly[1:], evenly[2:])]
    assert [round(d, 12) for d in line_deviations(evenly)] == [round(-x / math.sqrt(6), 12) for x in second]
    # independent noise of sd 1 at uneven steps reads as sd 1
    rng = random.Random(0)
    uneven = sorted(rng.sample(range(100000), 4000))
    deviations = line_deviations([(s, rng.gauss(0, 1)) for s in uneven])
    assert abs(math.sqrt(sum(d * d for d in deviations) / len(deviations)) - 1) < 0.05


def ratio_rows(ratio_at, log_noise, seed, train_noise=0.02, steps=6000, every=10, eval_every=150):
    """A steady train loss (log-normal row noise train_noise) and evals of val = 0.02 x ratio_at(step),
    scattered by a log-normal factor from one eval to the next (the snapshot of weights an eval reads)."""
    rng = random.Random(seed)
    rows = []
    for s in range(every, steps + 1, every):
        rows.append({"step": s, "train/loss": 0.02 * math.exp(rng.gauss(0, train_noise))})
        if s % eval_every == 0:
            rows.append({"step": s, "val/loss": 0.02 * ratio_at(s) * math.exp(rng.gauss(0, log_noise))})
    return rows


def test_a_val_that_jumps_about_its_train_level_is_not_below_train():
    # examples/plain_loop.py at --lr 0.5: the weights jump about, each batch's loss and each eval's
    # val / train scatter by factors (0.2x-5x), and two evals under 0.6 in a row came by chance every
    # ~20 evals: 6 "suspect leakage" warnings in one run before the allowance for that noise
    def noisy(seed):
        return ratio_rows(lambda s: 1.0, 0.5, seed, train_noise=0.5)

    # at most 1 in 100 (seed 15: the 7 evals before a chance streak of 4 read its noise at 0.32, for 0.55)
    assert len([seed for seed in range(100) if alerts_of("val_below_train", noisy(seed))]) <= 1
    # without the allowance, two evals in a row under 0.6 (the rule alone) come on most seeds
    lows = 0
    for seed in range(20):
        rows = noisy(seed)
        ratios = [r["val/loss"] / 0.02 for r in rows if "val/loss" in r]
        lows += any(a < 0.6 and b < 0.6 for a, b in zip(ratios, ratios[1:]))
    assert lows >= 10
    # a val alone that scatters (a tiny val set) is only known to once the evals before a streak show
    # it (2 line deviations: 4 evals): a streak of 2 in the first 5 evals can pass, none later does
    for seed in range(40):
        for alert in alerts_of("val_below_train", ratio_rows(lambda s: 1.0, 0.5, seed)):
            assert alert["step"] <= 5 * 150, (seed, alert["step"])


def test_a_steady_gap_is_found_at_its_second_eval_and_a_noisy_one_later():
    # report 001: val held at 0.36x train eval after eval, from step 3000 on
    def gap(s):
        return 1.0 if s < 3000 else 0.36

    for seed in range(5):
        alerts = alerts_of("val_below_train", ratio_rows(gap, 0.03, seed))
        assert [a["step"] for a in alerts] == [3150], seed
        assert alerts[0]["evidence"]["log_ratio_noise"] > 0
    # one eval an epoch, six in the run: the step where val leaked is not read as the ratio's noise
    # (a line through evals on each side of it read 0.5 in log units, and the gap went unreported)
    for seed in range(5):
        alerts = alerts_of("val_below_train", ratio_rows(gap, 0.03, seed, eval_every=1000))
        assert [a["step"] for a in alerts] == [4000], seed
    # the same gap read through 0.3 log-noise is found too, once enough low evals agree
    found = [alerts_of("val_below_train", ratio_rows(gap, 0.3, seed)) for seed in range(5)]
    assert all(f and 3000 < f[0]["step"] <= 4800 for f in found), [[a["step"] for a in f] for f in found]


def test_a_flat_loss_whose_points_line_up_on_one_row_is_not_rising():
    # the rows diagnose read (every 5th, steps 1-2600) of examples/plain_loop.py's 44k-step run at its
    # default LR: the loss sat at its noise floor (100-step medians 0.0029-0.0033), its level stayed 15%
    # over its lowest median for 20 rows in all, and on one of them (step 2434) 17 points since that
    # low happened to line up 1.7x over 249 steps. The trend must hold on 5 rows in a row.
    rows = json.loads((Path(__file__).parent / "data" / "plain_loop_flat_rows.json").read_text())
    doctor = OnlineDoctor({"lr": 3e-3, "steps": 60000}, schema=False)
    for step, train, val in rows:
        row = {"step": step, "train/loss": train, "val/loss": val}
        doctor.observe("metrics", {k: v for k, v in row.items() if v is not None})
    assert [a for a in doctor.alerts if a["severity"] != "info"] == []


def test_a_rise_whose_trend_is_not_shown_on_some_rows_is_reported_once():
    # the rows the online doctor read (steps 1-1600) of examples/plain_loop.py --lr 0.5: the loss rose
    # from 0.031 (step 845) to 0.47 and stayed up; on rows where the line through it was not steep
    # enough, counting the row as healthy ended the episode, and the same rise from the same best was
    # reported again at step 1442
    rows = json.loads((Path(__file__).parent / "data" / "plain_loop_hot_rows.json").read_text())
    doctor = OnlineDoctor({"lr": 0.5, "steps": 60000}, schema=False)
    for step, train, val, lr in rows:
        row = {"step": step, "train/loss": train, "val/loss": val, "lr": lr}
        doctor.observe("metrics", {k: v for k, v in row.items() if v is not None})
    rising = [a for a in doctor.alerts if a["code"] == "loss_rising"]
    assert [a["step"] for a in rising] == [1217] and rising[0]["evidence"]["best_step"] == 845
