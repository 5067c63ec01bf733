"""Named errors. The CLI and the dashboard turn these into one clean message each; no traceback
reaches a user for bad input."""


class TrainerError(Exception):
    """Base of every error a user can cause and fix."""


class ConfigError(TrainerError):
    """A config key, type or value is not allowed. The message names key, value and what is allowed."""


class RunIdError(TrainerError):
    """A run id is not a safe directory name."""


class RunNotFound(TrainerError):
    """No such run directory."""


class RunExists(TrainerError):
    """A new run would overwrite an existing run directory."""


class RunStateError(TrainerError):
    """The run is in a state that does not allow the action (resume a running run, say)."""


class CheckpointError(TrainerError):
    """A checkpoint is missing or cannot be loaded."""


class NoCheckpoint(CheckpointError):
    """The run ended before its first checkpoint: there is nothing to resume it from, only to start
    its config afresh (the dashboard offers that in one click)."""


class DeviceError(TrainerError):
    """The requested device is not available here."""


class ImportSourceError(TrainerError):
    """A log to import is missing, holds nothing importable, or lacks what the import needs (a step column)."""


class RunBusy(RunStateError):
    """Another live process holds the run directory's writer lock (a second start or resume of one run)."""
