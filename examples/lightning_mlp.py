"""A small MLP regression fitted by Lightning, watched by the training doctor: one callback
(trainer.integrations.lightning.DoctorCallback).

    pip install -e .[lightning]
    python examples/lightning_mlp.py                 # 500 steps on CPU, ~20 s (Lightning's per-step cost)
    python examples/lightning_mlp.py --steps 200 --run-id mlp-pl-1
    python -m trainer diagnose runs/mlp-pl-1         # the doctor's report
    torchrun --standalone --nproc_per_node=2 examples/lightning_mlp.py   # one DDP job, one run
    streamlit run app/Home.py                        # live curves, alerts, and the Stop button
"""

import argparse
import os

import lightning.pytorch as L
import torch
from torch import nn

from trainer.integrations.lightning import DoctorCallback

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=500)
parser.add_argument("--run-id", default=None, help="default: lightning_mlp-<date>-<time>")
args = parser.parse_args()


class Regression(L.LightningModule):
    """y = sin(3x) by a two-layer MLP; hparams (lr, hidden) become the run's config.yaml."""

    def __init__(self, lr: float = 3e-3, hidden: int = 64):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(
            nn.Linear(1, hidden), nn.Tanh(), nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1)
        )

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)  # the callback logs it as train/loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y), sync_dist=True)  # val/loss; averaged over ranks

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)


torch.manual_seed(0)
torch.set_num_threads(1)  # a model this small runs fastest on one thread (and shares the machine)
x = torch.linspace(-2, 2, 4096).unsqueeze(1)
data = torch.utils.data.TensorDataset(x, torch.sin(3 * x) + 0.05 * torch.randn_like(x))
train = torch.utils.data.DataLoader(data, batch_size=128, shuffle=True)
val = torch.utils.data.DataLoader(torch.utils.data.Subset(data, range(0, 4096, 7)), batch_size=512)

doctor = DoctorCallback(run_id=args.run_id)  # runs/<id>/; log_every: the Trainer's log_every_n_steps
# Under torchrun, Lightning joins the processes torchrun started only when told how many there are;
# with its default of one device each, every process would fit alone and write a run of its own.
processes = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
fit = L.Trainer(
    max_steps=args.steps,
    accelerator="cpu",
    devices=processes,
    num_nodes=int(os.environ.get("WORLD_SIZE", processes)) // processes,
    strategy="ddp" if "LOCAL_WORLD_SIZE" in os.environ else "auto",
    logger=False,  # the run directory is the log; any Lightning logger works beside the callback
    enable_checkpointing=False,
    enable_progress_bar=False,
    val_check_interval=100,  # every 100 steps, across epoch ends
    check_val_every_n_epoch=None,
    callbacks=[doctor],
)
fit.fit(Regression(), train, val)  # the dashboard's Stop sets trainer.should_stop; a raise: failed
if doctor.run is not None:  # under torchrun, rank 0's (the other ranks write no run)
    print(f"run {doctor.run.run_id}: {doctor.run.run_dir}")
