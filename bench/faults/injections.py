"""Faults that need a hand inside the process: a command's own main, run with one function patched.

    python -m bench.faults.injections INJECTION [VALUE] COMMAND...

COMMAND is the command line as `python` would take it (`train/run.py --steps 8 ...`, `export/upscale.py ...`,
`-m train.data prepare ...`); commands.injected builds it. No test hooks in the toolkit: what is patched is the
function a fault would hit (Accelerate's save_state, the loss, a writer's last step before its rename).
Standard library only at the top: the toolkit is imported by the injection, after its patch is decided.
"""

import importlib
import os
import signal
import sys
import time

# The entry point of each command: (its first words, the module whose `main` it runs).
ENTRY_POINTS = {
    ("train/run.py",): "train.run",
    ("export/upscale.py",): "export.upscale",
    ("train/evaluate.py",): "train.evaluate",
    ("export/to_onnx.py",): "export.to_onnx",
    ("-m", "train.data"): "train.data.subimages",
}


def entry_point(command):
    """(the module of `command`'s main, the arguments that main takes), with sys.argv[1:] as the command's."""
    for words, module in ENTRY_POINTS.items():
        if tuple(command[: len(words)]) == words:
            sys.argv[1:] = command[len(words) :]
            return module, command[len(words) :]
    raise SystemExit(f"injections: no entry point known for {command[:2]}")


def train_main(command):
    """(train.run, the arguments of train/run.py's main), with sys.argv as the command would have it."""
    module, args = entry_point(command)
    assert module == "train.run", f"this injection runs train/run.py, not {command[0]}"
    import train.run

    return train.run, args


# ---------------------------------------------------------------------------------------------------------------
# train/run.py


def kill_while_saving(command):
    """SIGKILL once the step-4 checkpoint's files are written, before its folder is renamed complete."""
    import accelerate

    run, args = train_main(command)
    original = accelerate.Accelerator.save_state

    def save_then_die(self, output_dir=None, **kwargs):
        result = original(self, output_dir, **kwargs)
        if str(output_dir).endswith("step-00000004.partial"):
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    accelerate.Accelerator.save_state = save_then_die
    run.main(args)


def slow_save(command):
    """train/run.py as the program (its signal handlers installed) whose checkpoints after step 2 take 3 s to
    write, so that a second Ctrl-C lands while the stop's checkpoint is being written."""
    import accelerate

    run, args = train_main(command)
    original = accelerate.Accelerator.save_state

    def slow(self, output_dir=None, **kwargs):
        result = original(self, output_dir, **kwargs)
        if not str(output_dir).endswith("step-00000002.partial"):
            time.sleep(3)
        return result

    accelerate.Accelerator.save_state = slow
    run.STOP.install()
    try:
        run.main(args)
    except run.Interrupted as stopped:
        print(f"error: {stopped}", file=sys.stderr)
        sys.exit(128 + stopped.signum)


def nan_loss(steps, command):
    """An L1 loss that is NaN at the optimizer steps `steps` (1-based, comma-separated; `3-`: from 3 on)."""
    import torch

    run, args = train_main(command)
    listed = [item.split("-") for item in steps.split(",")]
    calls = []

    def is_nan(step):
        return any(step == int(first) if not rest else step >= int(first) for first, *rest in listed)

    def loss(sr, hr):
        calls.append(1)
        value = torch.nn.functional.l1_loss(sr, hr)
        return value * float("nan") if is_nan(len(calls)) else value

    run.LOSSES["l1"] = loss
    try:
        run.main(args)
    except ValueError as error:
        sys.exit(f"error: {error}")


def fault_in_rank_1(mode, command):
    """Under `accelerate launch` with 2 processes: rank 1 fails at its second loss, `raise` (an exception) or
    `nan` (a NaN loss in that rank only)."""
    import torch

    run, args = train_main(command)
    rank, calls = int(os.environ.get("RANK", 0)), []

    def loss(sr, hr):
        calls.append(1)
        value = torch.nn.functional.l1_loss(sr, hr)
        if rank == 1 and len(calls) == 2:
            if mode == "raise":
                raise RuntimeError("injected fault in rank 1 at step 2")
            return value * float("nan")
        return value

    run.LOSSES["l1"] = loss
    try:
        run.main(args)
    except ValueError as error:
        sys.exit(f"error: {error}")


# ---------------------------------------------------------------------------------------------------------------
# The writers (export/upscale.py, train/evaluate.py, export/to_onnx.py, python -m train.data prepare)

# Where a writer is held (or fails) once its partial output exists: (module, function, after?): the hook runs
# after the function (its output then exists) or before it.
WRITER_HOOKS = {
    "export.upscale": ("PIL.Image", "Image.save", True),
    "train.evaluate": ("train.evaluate", "score", False),
    "export.to_onnx": ("export.to_onnx", "check_parity", False),
    "train.data.subimages": ("train.data.store", "image_digest", False),
}


def writer_at_work(fault, command):
    """The writer's own main, held (`hold`: it sleeps) or failing (`full-disk`: ENOSPC) at its hooked function;
    prints `writing` when it gets there."""
    module, args = entry_point(command)
    patched, name, after = WRITER_HOOKS[module]
    owner = importlib.import_module(patched)
    for part in name.split(".")[:-1]:
        owner = getattr(owner, part)
    attribute = name.rsplit(".", 1)[-1]
    original = getattr(owner, attribute)

    def hooked(*a, **k):
        result = original(*a, **k) if after else None
        print("writing", flush=True)
        if fault == "hold":
            time.sleep(120)
        else:
            raise OSError(28, "No space left on device")
        return result if after else original(*a, **k)

    setattr(owner, attribute, hooked)
    main = importlib.import_module(module).main
    sys.argv[0] = "writer"
    main(args)


def slow_subimages(command):
    """python -m train.data prepare whose sub-image cutting (in datasets' worker processes) sleeps 120 s after
    printing `writing`."""
    _, args = entry_point(command)
    import train.data.subimages as subimages

    cut = subimages.cut_subimages

    def slow(*a, **k):
        print("writing", flush=True)
        time.sleep(120)
        return cut(*a, **k)

    subimages.cut_subimages = slow
    subimages.main(args)


# name -> (function, takes a value before the command?)
INJECTIONS = {
    "kill-while-saving": (kill_while_saving, False),
    "slow-save": (slow_save, False),
    "nan-loss": (nan_loss, True),
    "fault-in-rank-1": (fault_in_rank_1, True),
    "hold": (lambda command: writer_at_work("hold", command), False),
    "full-disk": (lambda command: writer_at_work("full-disk", command), False),
    "slow-subimages": (slow_subimages, False),
}


def main(argv):
    if not argv or argv[0] not in INJECTIONS:
        raise SystemExit(f"usage: python -m bench.faults.injections {{{','.join(INJECTIONS)}}} [VALUE] COMMAND...")
    function, takes_value = INJECTIONS[argv[0]]
    function(*argv[1:2], argv[2:]) if takes_value else function(argv[1:])


if __name__ == "__main__":
    main(sys.argv[1:])
