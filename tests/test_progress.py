"""The terminal during training: progress lines (plain or a bar), alert lines with a fork command, --quiet."""

import io
import time

import pytest
from test_cli_lifecycle import TINY as CLI_TINY

from trainer import cli, runs
from trainer.rundir import run_format as rf
from trainer.runs import process
from trainer.training import progress

# The CLI lifecycle's tiny model, with evals and checkpoints where these tests look for them.
TINY = [*CLI_TINY, "eval_interval=8", "checkpoint_interval=1000", "log_interval=4", "max_steps=12", "threads=1"]


def progress_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("step ")]


def test_durations_and_eta_read_like_a_clock():
    assert progress.format_duration(168) == "2m48s"
    assert progress.format_duration(3900) == "1h05m"
    assert progress.format_duration(9.4) == "9s"
    assert progress.format_duration(None) == "?"
    assert progress.eta_seconds(120, 2000, 11.2) == pytest.approx(1880 / 11.2)
    assert progress.eta_seconds(5, 10, 0.0) is None
    assert progress.eta_seconds(12, 10, 3.0) == 0


def test_progress_line_has_step_losses_speed_and_eta():
    line = progress.format_progress(120, 2000, 2.41, 2.5, 11.2, 168)
    assert line == "step 120/2000 | loss 2.4100 | val 2.5000 | 11.2 steps/s | eta 2m48s"


def test_progress_line_leaves_out_a_val_loss_not_measured_yet():
    line = progress.format_progress(5, 40, 4.1, None, None, None)
    assert line == "step 5/40 | loss 4.1000 | eta ?"
    assert "loss nan" in progress.format_progress(5, 40, float("nan"), None, 1.0, 35)


def test_alert_line_names_code_step_message_and_the_remedy_as_a_fork_command():
    alert = {
        "code": "non_finite",
        "severity": "critical",
        "step": 30,
        "message": "train/loss became non-finite\n(details)",
        "remedy": [{"set": {}, "why": "look"}, {"set": {"lr": 0.0005, "grad_clip": 1.0}, "why": "smaller steps"}],
    }
    line = progress.format_alert("fc1", alert)
    assert line == (
        "alert critical non_finite at step 30: train/loss became non-finite"
        " | try: python -m trainer fork fc1 --from best --run-id fc1-fix --set lr=0.0005 grad_clip=1.0"
    )
    assert "try:" not in progress.format_alert("fc1", {**alert, "remedy": []})


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_other_streams_plain_lines_and_quiet_nothing():
    terminal = FakeTerminal()
    bar = progress.open_progress("fc1", 10, stream=terminal)
    assert isinstance(bar, progress.RichProgress)
    bar.update(5, {rf.TRAIN_LOSS: 3.0, rf.STEPS_PER_S: 2.0})
    bar.alert({"code": "loss_plateau", "severity": "warning", "step": 5, "message": "flat"})
    bar.close()
    shown = terminal.getvalue()
    assert "step 5/10 | loss 3.0000" in shown and "alert warning loss_plateau at step 5: flat" in shown

    plain = io.StringIO()
    lines = progress.open_progress("fc1", 10, stream=plain)
    assert type(lines) is progress.PlainProgress
    lines.update(5, {rf.TRAIN_LOSS: 3.0, rf.STEPS_PER_S: 2.0})
    assert plain.getvalue() == "step 5/10 | loss 3.0000 | 2.0 steps/s | eta 2s\n"
    assert progress.open_progress("fc1", 10, quiet=True, stream=plain) is None


def test_a_run_prints_one_line_per_logged_row_with_the_steps_val_loss(capsys, runs_dir):
    code = cli.main(["run", "--run-id", "p", "--set", *TINY, "--runs-dir", str(runs_dir)])
    lines = progress_lines(capsys.readouterr().out)
    assert code == 0
    assert [line.split(" | ")[0] for line in lines] == ["step 4/12", "step 8/12", "step 12/12"]
    assert "val" not in lines[0] and " | val " in lines[1]  # the eval at step 8 shows on step 8's line
    assert lines[-1].endswith("eta 0s")


def test_an_alert_prints_as_it_fires_with_a_fork_command(capsys, runs_dir):
    # lr=50 diverges within a few steps; the doctor's non_finite alert stops the run (doctor.stop_on).
    code = cli.main(["run", "--run-id", "hot", "--set", *TINY, "lr=50", "max_steps=40", "--runs-dir", str(runs_dir)])
    out = capsys.readouterr().out
    [alert] = [line for line in out.splitlines() if line.startswith("alert critical non_finite: ")]
    assert code == 0 and "| try: python -m trainer fork hot --from best --run-id hot-fix --set lr=" in alert
    assert alert.count(" at step ") == 1  # the message names its step; the line's head then does not


def test_quiet_prints_no_progress_lines(capsys, runs_dir):
    code = cli.main(["run", "--run-id", "q", "--quiet", "--set", *TINY, "--runs-dir", str(runs_dir)])
    out = capsys.readouterr().out
    assert code == 0 and progress_lines(out) == [] and "run q: finished" in out
    assert (runs_dir / "q" / rf.METRICS_FILE).read_text().count('"step":12') >= 1


@pytest.mark.slow
def test_a_background_runs_train_log_shows_one_line_per_log_interval(capsys, runs_dir):
    before = set(process._children)
    try:
        code = cli.main(["run", "--run-id", "bg", "--background", "--set", *TINY, "--runs-dir", str(runs_dir)])
        assert code == 0
        deadline = time.monotonic() + 120
        while runs.run_state(runs_dir / "bg") not in (rf.FINISHED, rf.FAILED, rf.CRASHED):
            assert time.monotonic() < deadline, "the background run did not finish"
            time.sleep(0.2)
        log = (runs_dir / "bg" / rf.LOG_FILE).read_text()
        assert [line.split(" | ")[0] for line in progress_lines(log)] == ["step 4/12", "step 8/12", "step 12/12"]
    finally:
        for pid, popen in list(process._children.items()):
            if pid not in before and popen.poll() is None:
                popen.kill()
                popen.wait(timeout=10)
        process.reap()
