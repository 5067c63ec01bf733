"""trainer.integrations: the Hugging Face Trainer and Lightning watched through one callback each,
on small models trained for a few dozen steps on CPU (nothing downloaded)."""

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from trainer import runs
from trainer.doctor import diagnose
from trainer.rundir import run_format as rf
from trainer.rundir.jsonl import read_records
from trainer.rundir.status import read_config, read_status

ROOT = Path(__file__).resolve().parents[1]
# These judge the (shared) machine, not the training: a CI box's steps/s can halve (tests/test_tasks_presets.py).
MACHINE_CODES = ("slowdown", "memory_growth")


def series(run_dir, key: str) -> list[tuple[int, float]]:
    return [(r["step"], r[key]) for r in read_records(run_dir / rf.METRICS_FILE) if r.get(key) is not None]


def assert_watched_run(run_dir, state: str) -> None:
    """The run directory a watched library run leaves: our series, gradient rows, a diagnosis."""
    assert read_status(run_dir)["state"] == state
    for key in (rf.TRAIN_LOSS, rf.LR, rf.GRAD_NORM, rf.VAL_LOSS):
        assert series(run_dir, key), f"no {key} rows"
    assert all(v > 0 for _, v in series(run_dir, rf.TRAIN_LOSS) + series(run_dir, rf.GRAD_NORM))
    grads = read_records(run_dir / rf.GRADS_FILE)
    assert grads and all(g["norms"] and g["update_ratios"] for g in grads)
    report = diagnose(run_dir)
    assert report["run"]["state"] == state
    # issue 11 part 4: these healthy runs from other programs are part of the doctor's corpus
    serious = [(a["code"], a["step"], a["message"]) for a in report["alerts"] if a["severity"] != "info"]
    assert not [a for a in serious if a[0] not in MACHINE_CODES], serious


def stop_after(step: int, runs_dir, run_id: str):
    """What the dashboard's Stop does, once the run has taken `step` steps."""
    sent = []

    def maybe_stop(global_step: int) -> None:
        if global_step >= step and not sent:
            runs.request_stop(runs_dir, run_id)
            sent.append(global_step)

    return maybe_stop


# --- Hugging Face ---------------------------------------------------------------------------------
class CharWindows(torch.utils.data.Dataset):
    """64-character windows of a text as token ids (labels = inputs: the model shifts them)."""

    def __init__(self, ids: torch.Tensor, block: int = 64):
        self.ids, self.block = ids, block

    def __len__(self):
        return len(self.ids) // self.block

    def __getitem__(self, i):
        window = self.ids[i * self.block : (i + 1) * self.block]
        return {"input_ids": window, "labels": window}


def hf_trainer(tmp_path, callbacks, max_steps=40):
    transformers = pytest.importorskip("transformers")
    text = (ROOT / "data" / "tinyshakespeare.txt").read_text()
    vocab = sorted(set(text))
    ids = torch.tensor([vocab.index(c) for c in text[:40_000]] + [vocab.index(c) for c in text[-2_048:]])
    train, held_out = CharWindows(ids[:40_000]), CharWindows(ids[40_000:])  # 625 and 32 windows
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=64, n_embd=32, n_layer=2, n_head=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "hf"),
        max_steps=max_steps,
        per_device_train_batch_size=8,
        per_device_eval_batch_size=16,
        learning_rate=3e-3,
        logging_steps=5,
        eval_strategy="steps",
        eval_steps=20,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        seed=0,
    )
    model = transformers.GPT2LMHeadModel(config)
    return transformers.Trainer(model=model, args=args, train_dataset=train, eval_dataset=held_out, callbacks=callbacks)


def test_hf_trainer_run_directory_has_our_series_grads_and_a_diagnosis(runs_dir, tmp_path):
    from trainer.integrations.hf import DoctorCallback

    doctor = DoctorCallback(run_id="gpt2", runs_dir=runs_dir)
    with doctor:
        hf_trainer(tmp_path, [doctor]).train()
    run_dir = runs_dir / "gpt2"
    assert_watched_run(run_dir, rf.FINISHED)
    assert [s for s, _ in series(run_dir, rf.TRAIN_LOSS)] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [s for s, _ in series(run_dir, rf.VAL_LOSS)] == [20, 40]
    assert read_status(run_dir)[rf.STATUS_BEST_VAL_LOSS] == min(v for _, v in series(run_dir, rf.VAL_LOSS))
    assert series(run_dir, rf.EPOCH)[-1][1] > 0
    assert [g["step"] for g in read_records(run_dir / rf.GRADS_FILE)] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert runs.list_runs(runs_dir)[0].writer == rf.WRITER_API
    saved = read_config(run_dir)
    assert saved["learning_rate"] == 3e-3 and saved["max_steps"] == 40 and saved["model"]["n_embd"] == 32


def test_hf_trainer_stops_early_on_a_stop_request(runs_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    from trainer.integrations.hf import DoctorCallback

    maybe_stop = stop_after(10, runs_dir, "gpt2-stop")

    class StopButton(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            maybe_stop(state.global_step)

    trainer = hf_trainer(tmp_path, [StopButton(), DoctorCallback(run_id="gpt2-stop", runs_dir=runs_dir)])
    trainer.train()
    assert trainer.state.global_step == 10
    run_dir = runs_dir / "gpt2-stop"
    assert read_status(run_dir)["state"] == rf.STOPPED
    assert "stop" in [e["kind"] for e in read_records(run_dir / rf.EVENTS_FILE)]


def test_hf_trainer_that_raises_leaves_the_run_failed(runs_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    from trainer.integrations.hf import DoctorCallback

    class Broken(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise RuntimeError("disk full")

    doctor = DoctorCallback(run_id="gpt2-fail", runs_dir=runs_dir)
    with pytest.raises(RuntimeError, match="disk full"), doctor:
        hf_trainer(tmp_path, [doctor, Broken()]).train()
    status = read_status(runs_dir / "gpt2-fail")
    assert status["state"] == rf.FAILED and "RuntimeError: disk full" in status["message"]


# --- Lightning ------------------------------------------------------------------------------------
def lightning_fit(runs_dir, run_id: str, max_steps: int = 40, extra_callbacks=(), step_hook=None, **trainer_kwargs):
    """A tiny MLP regression (y = sin(3x)) fitted by lightning.pytorch.Trainer with our callback
    (trainer_kwargs: more of the Trainer's arguments, e.g. devices and strategy)."""
    L = pytest.importorskip("lightning.pytorch")
    from trainer.integrations.lightning import DoctorCallback

    class Regression(L.LightningModule):
        def __init__(self, lr: float = 3e-3, hidden: int = 32):
            super().__init__()
            self.save_hyperparameters()
            self.net = nn.Sequential(nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, 1))

        def training_step(self, batch, batch_idx):
            if step_hook is not None:
                step_hook(self.trainer.global_step)
            x, y = batch
            return nn.functional.mse_loss(self.net(x), y)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 2048).unsqueeze(1)
    data = torch.utils.data.TensorDataset(x, torch.sin(3 * x))
    train = torch.utils.data.DataLoader(data, batch_size=32, shuffle=True)
    val = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(0, 2048, 16)), batch_size=128)
    doctor = DoctorCallback(run_id=run_id, runs_dir=runs_dir, log_every=5)
    fit = L.Trainer(
        max_steps=max_steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        val_check_interval=20,
        num_sanity_val_steps=0,
        callbacks=[*extra_callbacks, doctor],
        **trainer_kwargs,
    )
    fit.fit(Regression(), train, val)
    return fit


def test_lightning_run_directory_has_our_series_grads_and_a_diagnosis(runs_dir):
    lightning_fit(runs_dir, "mlp")
    run_dir = runs_dir / "mlp"
    assert_watched_run(run_dir, rf.FINISHED)
    assert [s for s, _ in series(run_dir, rf.TRAIN_LOSS)] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert [s for s, _ in series(run_dir, rf.VAL_LOSS)] == [20, 40]
    assert [v for _, v in series(run_dir, rf.LR)] == [3e-3] * 8
    assert [g["step"] for g in read_records(run_dir / rf.GRADS_FILE)] == [5, 10, 15, 20, 25, 30, 35, 40]
    assert read_config(run_dir) | {"precision": None} == {
        "lr": 3e-3,
        "hidden": 32,
        "module": "Regression",
        "max_steps": 40,
        "max_epochs": -1,
        "accumulate_grad_batches": 1,
        "gradient_clip_val": None,
        "precision": None,
    }


def test_lightning_stops_early_on_a_stop_request(runs_dir):
    fit = lightning_fit(runs_dir, "mlp-stop", step_hook=stop_after(10, runs_dir, "mlp-stop"))
    assert fit.global_step == 11  # the request came inside step 11's training_step: that step ends
    status = read_status(runs_dir / "mlp-stop")
    assert status["state"] == rf.STOPPED and status["message"].startswith("stopped at step 11:")
    # logged every 5 steps, and the step it stopped at too: the run ends where training did
    assert [s for s, _ in series(runs_dir / "mlp-stop", rf.TRAIN_LOSS)] == [5, 10, 11]


def test_lightning_run_whose_last_step_is_not_a_logging_step_ends_with_its_row(runs_dir):
    lightning_fit(runs_dir, "mlp-43", max_steps=43)
    status = read_status(runs_dir / "mlp-43")
    assert status["state"] == rf.FINISHED and status["message"] == "finished at step 43"
    losses = series(runs_dir / "mlp-43", rf.TRAIN_LOSS)
    assert [s for s, _ in losses] == [5, 10, 15, 20, 25, 30, 35, 40, 43] and all(math.isfinite(v) for _, v in losses)


def test_lightning_fit_that_raises_leaves_the_run_failed(runs_dir):
    def broken(step: int) -> None:
        if step == 3:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        lightning_fit(runs_dir, "mlp-fail", step_hook=broken)
    status = read_status(runs_dir / "mlp-fail")
    assert status["state"] == rf.FAILED and "RuntimeError: disk full" in status["message"]
