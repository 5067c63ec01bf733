import time as _time
from pathlib import Path as _Path

# The checkout: configs/, data/ and the trainer's entry point are found from here, whatever the cwd.
PROJECT_ROOT = _Path(__file__).resolve().parents[1]

# When this process began running our code: the first import of `python -m trainer`. Used to
# tell a stop request the previous process already honoured from one written after we started.
# (psutil's create_time is only accurate to about a second on Linux, too coarse for that.)
PROCESS_STARTED = _time.time()

_API = ("init", "Run")


def __getattr__(name: str):
    """trainer.init and trainer.Run (PEP 562). Lazy for start-up cost only: the logging API imports
    torch, and `import trainer` (the CLI's `python -m trainer list`) must not."""
    if name in _API:
        from trainer import api

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'trainer' has no attribute {name!r}")
