import time as _time

# When this process began running our code: the first import of `python -m trainer`. Used to
# tell a stop request the previous process already honoured from one written after we started.
# (psutil's create_time is only accurate to about a second on Linux, too coarse for that.)
PROCESS_STARTED = _time.time()
