"""Run under `torchrun --nproc_per_node=2` by tests/test_integrations_ddp.py: the Hugging Face Trainer
(test_integrations.hf_trainer: a small GPT-2 on the bundled Shakespeare) and then a Lightning Trainer
(test_integrations.lightning_fit, strategy="ddp"), each with our DoctorCallback and a fixed run id,
on 2 CPU processes (gloo). On rank 0 a stop is requested as the dashboard's Stop does, once the run
has taken STOP_AT steps. Each rank prints the step it ended at.

    torchrun --standalone --nproc_per_node=2 tests/ddp_callbacks_driver.py RUNS_DIR
"""

import os
import sys
from pathlib import Path

STOP_AT, MAX_STEPS = 10, 400
RANK = int(os.environ.get("RANK", "0"))  # torchrun's (the test imports the two figures above)


def request_stop_at(runs_dir: Path, run_id: str):
    """A step hook: on rank 0 only, once, what the dashboard's Stop button does (rank 1 never sees it)."""
    from trainer import runs

    def hook(step: int) -> None:
        if RANK == 0 and step >= STOP_AT and not (runs_dir / run_id / "control" / "stop").exists():
            runs.request_stop(runs_dir, run_id)

    return hook


def hugging_face(runs_dir: Path) -> int:
    import transformers
    from test_integrations import hf_trainer

    from trainer.integrations.hf import DoctorCallback

    stop = request_stop_at(runs_dir, "hf-ddp")

    class StopButton(transformers.TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stop(state.global_step)

    doctor = DoctorCallback(run_id="hf-ddp", runs_dir=runs_dir)
    hf = hf_trainer(runs_dir.parent, [StopButton(), doctor], max_steps=MAX_STEPS)
    with doctor:
        hf.train()
    return hf.state.global_step


def lightning(runs_dir: Path) -> int:
    from test_integrations import lightning_fit

    hook = request_stop_at(runs_dir, "lightning-ddp")
    fit = lightning_fit(runs_dir, "lightning-ddp", MAX_STEPS, step_hook=hook, devices=2, strategy="ddp")
    return fit.global_step


if __name__ == "__main__":
    runs_dir = Path(sys.argv[1])
    print(f"rank {RANK} hf ended at {hugging_face(runs_dir)}", flush=True)
    print(f"rank {RANK} lightning ended at {lightning(runs_dir)}", flush=True)
