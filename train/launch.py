"""sr-launch: `accelerate launch`, same arguments and launcher, with an exit that reads like every other command.

`sr-launch train/run.py ...` is `accelerate launch train/run.py ...` (any launch config, single or multi-process),
except for what the launcher adds around the training processes' own output, all of which is printed as before:
- accelerate's 4-line note about values "not passed to `accelerate launch`" (num_processes, mixed_precision, ...
  when no launch config is given) is not printed: the defaults it takes are the ones the README asks for;
- when a training process fails, the launcher exits with its exit status instead of adding its own traceback
  (accelerate's CalledProcessError for one process, torchrun's ChildFailedError report for several) and the
  agent's "closing signal" / "failed (exitcode ...)" log lines. The process itself has already said why: one
  `error:` line for a user's mistake (sr_models/errors.py), the full traceback for a bug.

- a signal (Ctrl-C, a closed terminal, a scheduler's SIGTERM) is passed to the training process, and the launcher
  waits for it to save and stop, however long that takes. (accelerate's own single-process launcher follows with
  SIGTERM at once and SIGKILL 5 s later, which cut the save short.) The process's own handler says how it stopped;
  the launcher exits with its status. torchrun's agent (several processes) forwards the signal itself.

`accelerate launch --quiet` drops the traceback for one process only and exits 1 whatever the child's status;
there is no launcher option for the note or for the multi-process report, hence this wrapper.
"""

import logging
import os
import signal
import subprocess
import sys

import accelerate.commands.launch as accelerate_launch
from accelerate.commands.launch import launch_command, launch_command_parser
from accelerate.utils import prepare_simple_launcher_cmd_env
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

from sr_models.errors import remove_said_markers

# Launcher messages that repeat what the failing process already printed, or announce defaults we chose.
QUIETED = {
    "accelerate.commands.launch": ("had defaults used instead",),
    "torch.distributed.elastic.multiprocessing.api": ("closing signal", "failed (exitcode"),
    "torch.distributed.elastic.agent.server.api": ("death signal",),
}
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Drop(logging.Filter):
    def __init__(self, phrases):
        super().__init__()
        self.phrases = phrases

    def filter(self, record):
        message = record.getMessage()
        return not any(phrase in message for phrase in self.phrases)


def child_status(returncode):
    """The exit status to pass on: a process ended by signal N reads as 128 + N, the shell's convention."""
    return 128 - returncode if returncode < 0 else returncode


def one_process_launcher(args):
    """accelerate's simple launcher, except for signals: each one is passed on, and the launcher waits."""
    command, env = prepare_simple_launcher_cmd_env(args)
    process = subprocess.Popen(command, env=env)
    for signum in STOP_SIGNALS:  # the same signal also reaching it from the terminal counts once (train/run.py)
        signal.signal(signum, lambda signum, frame: process.send_signal(signum))
    status = child_status(process.wait())
    if status:
        sys.exit(status)


def main(argv=None):
    args = launch_command_parser().parse_args(argv)
    for name, phrases in QUIETED.items():
        logging.getLogger(name).addFilter(Drop(phrases))
    accelerate_launch.simple_launcher = one_process_launcher  # launch_command picks it for one process
    try:
        launch_command(args)
    except subprocess.CalledProcessError as failed:  # one process: it printed its own error
        sys.exit(child_status(failed.returncode))
    except SignalException as stopped:  # several processes: the agent has stopped them, each said how
        sys.exit(128 + stopped.sigval)
    except (
        ChildFailedError
    ) as failed:  # several processes (torchrun): each one's exit status, the first one's passed on
        _, first = failed.get_first_failure()
        sys.exit(child_status(first.exitcode) or 1)
    finally:  # torchrun's agent runs in this process: the training processes' "said once" markers are ours to remove
        remove_said_markers(os.getpid())


if __name__ == "__main__":
    main()
