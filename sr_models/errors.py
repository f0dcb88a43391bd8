"""Errors a user can cause, and the one place where they become the `error: <file or option>: <problem>` line.

Every command wraps its work in `with user_errors():`. A `UserError` (a bad file, option or input: its message
names it and the problem) is printed as one line and the command exits 1; anything else, a plain ValueError
included, is a bug in the toolkit and keeps its traceback. The toolkit's own error classes (ImageError,
WeightsError, ConfigError, CheckpointError, OnnxModelError, OutputError, ParityError, ExportError, ...) derive
from UserError; raise one of them, or UserError itself, for anything the user can fix.
"""

import hashlib
import os
import re
import tempfile
from contextlib import contextmanager


class UserError(ValueError):
    """Something the user can fix (a file, an option, an input); the message names it and says what is wrong."""


def one_line(error):
    """The message of `error` on one line (a message quoting another library's multi-line text included)."""
    return " ".join(str(error).split()) or type(error).__name__


@contextmanager
def user_errors():
    """Turn a UserError raised inside into `error: ...` on stderr and exit status 1; let every other error through."""
    try:
        yield
    except UserError as error:
        line = f"error: {one_line(raised_message(error))}"
        _launch_marker("an error was said", exclusive=False)
        # SystemExit with a message: Python prints it on stderr and exits 1 (sys.exit's convention).
        raise SystemExit(line if first_to_say(line) else 1) from None


WORKER_RERAISE = re.compile(r"Caught \w+ in DataLoader worker process \d+\.\s+Original Traceback")


def raised_message(error):
    """The message `error` was raised with. An error raised in a DataLoader worker reaches the main process as the
    same class with the worker's whole traceback as its message: its own message is the traceback's last entry."""
    message = str(error)
    if not WORKER_RERAISE.match(message):
        return message
    name = f"{type(error).__module__}.{type(error).__qualname__}: "
    last = message.rfind("\n" + name)
    return message[last + 1 + len(name) :] if last >= 0 else message.strip().splitlines()[-1]


def first_to_say(line):
    """Whether this process prints `line`: once per launch. In a multi-process run every process usually meets the
    same bad file or option, and the user should read its line once, not once per process. A line only one
    process meets (its own shard of data) is still printed, by that process."""
    # O_EXCL: of the processes that meet the same line, exactly one creates the marker and prints it
    return _launch_marker(line, exclusive=True) is not False


def launch_has_said_an_error():
    """Whether a process of this multi-process launch has stopped on an error it printed. Its peers' next collective
    then fails ("Connection closed by peer"): that failure is a consequence, and not worth a traceback of its own."""
    marker = _launch_marker("an error was said", exclusive=None)
    return marker is not None and os.path.exists(marker)


def _launch_marker(what, *, exclusive):
    """The path of this launch's marker for `what` (None outside a multi-process launch). exclusive=True: create it,
    False when it already existed; exclusive=False: create it if missing; None: only name it."""
    launch = _launch_id()
    if not launch:
        return None
    digest = hashlib.sha256(f"{launch}\0{what}".encode()).hexdigest()[:24]
    marker = os.path.join(tempfile.gettempdir(), said_marker_prefix(os.getppid()) + digest)
    if exclusive is not None:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_WRONLY | (os.O_EXCL if exclusive else 0), 0o600))
        except FileExistsError:
            return False
        except OSError:
            pass  # no writable temporary folder: printing twice beats printing nothing
    return marker


def said_marker_prefix(agent):
    """The name every marker of the launch whose agent (the processes' parent) is `agent` starts with: sr-launch,
    that agent, removes them when the launch ends."""
    return f"sr-toolkit-said-{agent}-"


def remove_said_markers(agent):
    folder = tempfile.gettempdir()
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(said_marker_prefix(agent)):
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass  # removed by another cleanup, or not ours to remove


def _launch_id():
    """What the processes of one torchrun launch on this machine share and no other launch has: the agent (their
    parent) and its start time, so a reused pid is another launch. None outside a multi-process launch, or
    without /proc (then each process prints its own line)."""
    if int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))) < 2:
        return None
    agent = os.getppid()
    try:
        with open(f"/proc/{agent}/stat") as stat:  # field 22, after the parenthesised command name: start time
            started = stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{os.environ.get('TORCHELASTIC_RUN_ID', '')}:{agent}:{started}"
