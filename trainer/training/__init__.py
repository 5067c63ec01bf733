"""Training: the loop, its checkpoints and probes, devices and DDP, the tasks and their models."""
