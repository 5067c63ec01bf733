"""The logging API for your own training loop: `trainer.init()` returns a Run (docs/logging-api.md).

    run = trainer.init(config={"lr": 3e-4})
    run.log({"train/loss": loss}, step=step)
    run.finish()

One module per concept:

    run.py     init() and the Run handle: log, variance, sample, watch, should_stop, finish
    grads.py   watch(): gradient norms and update ratios through optimizer step hooks
    values.py  what log() accepts, and tensors to numbers off the training thread
"""

from trainer.api.run import Run, init

__all__ = ["Run", "init"]
