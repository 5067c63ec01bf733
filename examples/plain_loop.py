"""A plain PyTorch loop watched by the training doctor: three lines added (trainer.init, run.log,
run.should_stop), plus run.watch / run.variance / run.sample for the doctor's other checks.

    python examples/plain_loop.py                  # ~2,000 steps of a tiny MLP on CPU, a few seconds
    python examples/plain_loop.py --steps 200 --run-id mlp-1
    python -m trainer list                         # the run is there, like ours
    python -m trainer diagnose runs/mlp-1          # the doctor's report
    streamlit run app/Home.py                      # live curves, alerts, and the Stop button
"""

import argparse
import math

import torch
from torch import nn

import trainer

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--steps", type=int, default=2000)
parser.add_argument("--run-id", default=None, help="default: plain_loop-<date>-<time>")
parser.add_argument("--lr", type=float, default=3e-3)
args = parser.parse_args()

torch.manual_seed(0)
torch.set_num_threads(1)  # a model this small runs fastest on one thread (and shares the machine)
# y = sin(3x) + noise: a small regression with a visible learning curve.
x_all = torch.linspace(-2, 2, 4096).unsqueeze(1)
y_all = torch.sin(3 * x_all) + 0.05 * torch.randn_like(x_all)
model = nn.Sequential(nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1))
optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)

with trainer.init(run_id=args.run_id, config=vars(args)) as run:  # 1) a run directory
    run.watch(model, every=50)  # per-parameter gradient norms for the doctor
    for step in range(1, args.steps + 1):
        lr = args.lr * 0.5 * (1 + math.cos(math.pi * step / args.steps))  # cosine decay
        for group in optimizer.param_groups:
            group["lr"] = lr
        idx = torch.randint(0, len(x_all), (128,))
        pred = model(x_all[idx])
        loss = nn.functional.mse_loss(pred, y_all[idx])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

        run.log({"train/loss": loss, "lr": lr}, step=step)  # 2) tensors as they are: no .item()
        if step % 50 == 0:
            run.variance(pred, y_all[idx])  # out/pred_std, out/target_std, out/variance_ratio
        if step % 250 == 0:
            with torch.no_grad():
                val_loss = nn.functional.mse_loss(model(x_all[::7]), y_all[::7])
            run.log({"val/loss": val_loss}, step=step)
            run.sample(pred=pred[:16, 0], target=y_all[idx][:16, 0])
        if run.should_stop():  # 3) the dashboard's Stop, `python -m trainer stop ID`, or the doctor
            torch.save(model.state_dict(), run.run_dir / "checkpoints" / "model.pt")
            break
print(f"run {run.run_id}: {run.run_dir}")
