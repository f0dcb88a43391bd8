"""A signal while a command is still importing (torch, datasets, onnxruntime: seconds) stops it in one line.

Installed first thing by each command's entry point, before its heavy imports: a KeyboardInterrupt raised inside
one of them is a traceback through importlib, or is swallowed by a library and lost. Standard library only, so it
can come before everything. Once a command runs, its own handlers take over (sr_models.files.writer_command,
train/run.py's StopSignals)."""

import os
import signal
import sys

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _stop(signum, frame):
    if int(os.environ.get("RANK", "0")) == 0:  # one line per launch, not one per process
        sys.stderr.write(f"interrupted: stopped by {signal.Signals(signum).name} while starting; nothing was written\n")
    os._exit(128 + signum)


def stop_while_starting():
    for number in SIGNALS:
        signal.signal(number, _stop)


def is_starting_handler(handler):
    return handler is _stop
