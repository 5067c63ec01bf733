import time as _time
from pathlib import Path as _Path

# The checkout: configs/, data/ and the trainer's entry point are found from here, whatever the cwd.
PROJECT_ROOT = _Path(__file__).resolve().parents[1]

# When this process began running our code: the first import of `python -m trainer`. Used to
# tell a stop request the previous process already honoured from one written after we started.
# (psutil's create_time is only accurate to about a second on Linux, too coarse for that.)
PROCESS_STARTED = _time.time()
