"""Callbacks that watch another library's trainer with the logging API (docs/logging-api.md).

    from trainer.integrations.hf import DoctorCallback          # transformers.Trainer(callbacks=[...])
    from trainer.integrations.lightning import DoctorCallback   # lightning.pytorch.Trainer(callbacks=[...])

One module per library; each imports its library at the top, so import only the one you have
(`pip install training-doctor[hf]` or `[lightning]`). This package itself imports neither.

    hf.py          DoctorCallback, a transformers.TrainerCallback
    lightning.py   DoctorCallback, a lightning.pytorch.Callback
    plain.py       a library's config objects as the plain dict config.yaml holds
    ranks.py       under torchrun: rank 0 alone writes the run, and its stop reaches every rank
"""
