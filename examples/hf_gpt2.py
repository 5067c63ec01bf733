"""A tiny GPT-2 trained by the Hugging Face Trainer on Shakespeare, watched by the training doctor:
one callback (trainer.integrations.hf.DoctorCallback). Random init, nothing downloaded.

    pip install -e .[hf]                             # transformers and accelerate
    python examples/hf_gpt2.py                       # 200 steps on CPU, ~30 s
    python examples/hf_gpt2.py --steps 40 --run-id gpt2-1
    torchrun --standalone --nproc_per_node=2 examples/hf_gpt2.py   # DDP: one run, written by rank 0
    python examples/hf_gpt2.py --steps 300 --lr 1 --warmup-steps 40 --logging-steps 2   # too high an LR
    python -m trainer diagnose runs/gpt2-1           # the doctor's report
    streamlit run app/Home.py                        # live curves, alerts, and the Stop button
"""

import argparse
import tempfile

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments

import trainer
from trainer.integrations.hf import DoctorCallback

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--run-id", default=None, help="default: hf_gpt2-<date>-<time>")
parser.add_argument("--lr", type=float, default=3e-3, help="the Trainer's peak learning rate (linear decay)")
parser.add_argument("--warmup-steps", type=int, default=0, help="linear warm-up to --lr over N steps")
parser.add_argument("--logging-steps", type=int, default=10, help="the Trainer logs every N steps")
args = parser.parse_args()

BLOCK = 64  # characters per training window, and the model's n_positions
text = (trainer.PROJECT_ROOT / "data" / "tinyshakespeare.txt").read_text()
vocab = sorted(set(text))  # a character vocabulary: 65 symbols
ids = torch.tensor([vocab.index(c) for c in text])
split = int(0.9 * len(ids))


class CharWindows(torch.utils.data.Dataset):
    """Consecutive BLOCK-character windows as token ids; labels = inputs (the model shifts them)."""

    def __init__(self, ids: torch.Tensor):
        self.ids = ids

    def __len__(self):
        return len(self.ids) // BLOCK

    def __getitem__(self, i):
        window = self.ids[i * BLOCK : (i + 1) * BLOCK]
        return {"input_ids": window, "labels": window}


torch.manual_seed(0)
model = GPT2LMHeadModel(GPT2Config(vocab_size=len(vocab), n_positions=BLOCK, n_embd=32, n_layer=2, n_head=2))
training_args = TrainingArguments(
    output_dir=tempfile.mkdtemp(prefix="hf_gpt2-"),  # the HF Trainer's own folder; save_strategy="no"
    max_steps=args.steps,
    per_device_train_batch_size=16,
    learning_rate=args.lr,
    warmup_steps=args.warmup_steps,
    logging_steps=args.logging_steps,
    eval_strategy="steps",
    eval_steps=50,
    save_strategy="no",
    report_to=[],
    use_cpu=True,
)
held_out = torch.utils.data.Subset(CharWindows(ids[split:]), range(32))  # 32 windows: a quick eval
doctor = DoctorCallback(run_id=args.run_id)  # runs/<id>/: config = training_args + model config
hf_trainer = Trainer(model, training_args, train_dataset=CharWindows(ids[:split]), eval_dataset=held_out)
hf_trainer.add_callback(doctor)
with doctor:  # a raise marks the run failed (a script's excepthook would too; this also covers Jupyter)
    hf_trainer.train()  # the dashboard's Stop ends training after the current step
if doctor.run is not None:  # under torchrun, rank 0's (the other ranks write no run)
    print(f"run {doctor.run.run_id}: {doctor.run.run_dir}")
