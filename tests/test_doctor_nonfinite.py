"""non_finite tells a GradScaler's skipped steps from a failure (issue 11): inf gradient norms beside a
finite loss, a couple of rows running while the loss scale settles, are healthy; a non-finite loss
is not, nor is a run of skipped steps that goes on."""

from trainer.doctor import OnlineDoctor


def _alerts(inf_rows, config=None, nan_loss_from=None) -> list[dict]:
    doctor = OnlineDoctor(config, schema=False, trainer_wrote=False)
    for i in range(1, 101):
        loss = None if nan_loss_from is not None and i >= nan_loss_from else 3.0 - 0.005 * i
        doctor.observe("metrics", {"step": 10 * i, "train/loss": loss, "grad/norm": None if i in inf_rows else 0.8})
    return [a for a in doctor.alerts if a["code"] == "non_finite"]


def test_two_skipped_steps_running_beside_a_finite_loss_are_a_loss_scaler_settling():
    assert not _alerts({2, 4, 5})


def test_three_rows_of_inf_gradients_are_a_failure_and_a_nan_loss_at_once():
    (alert,) = _alerts({40, 41, 42})
    assert alert["step"] == 420 and alert["evidence"]["series"] == ["grad/norm"]
    (alert,) = _alerts(set(), nan_loss_from=60)
    assert alert["step"] == 600 and alert["evidence"]["series"] == ["train/loss"]


def test_a_run_that_declares_fp16_may_skip_longer_but_not_for_ever():
    assert not _alerts({3, 4, 5, 6, 7}, config={"fp16": True})
    (alert,) = _alerts(set(range(40, 46)), config={"fp16": True})
    assert alert["step"] == 450


def test_a_run_that_came_back_from_an_inf_norm_is_skipping_steps_whatever_its_config_says():
    """No config (an HF run without config.yaml): one inf norm it came back from, the loss finite,
    shows a loss scaler at work, so 3 more in a row are it settling; 6 in a row are still a failure.
    Without that first one, 3 in a row are a failure (an fp32 overflow never comes back)."""
    assert not _alerts({3, 5, 6, 7})
    (alert,) = _alerts({3, *range(40, 46)})
    assert alert["step"] == 450
    (alert,) = _alerts({5, 6, 7})
    assert alert["step"] == 70
