"""Checkpoints: Accelerate's save_state/load_state in folders that appear complete or not at all.

A checkpoint is `<run>/checkpoints/step-00001000/`: what `accelerator.save_state` writes (model, optimizer,
scheduler, grad scaler, RNG states of every process, and the objects given to `register_for_checkpointing`:
the step counter and the EMA weights) plus the resolved `config.yaml`, so a checkpoint describes itself.
It is written as `step-00001000.partial/` and renamed when every process has finished writing: a folder
without the suffix is always complete, and `--resume latest` never picks up a half-written one.

Resuming runs no code from the checkpoint: Accelerate's `load_state` unpickles the registered objects with
`weights_only=False`, so `check_code_free` first loads every pickle of the folder with `weights_only=True` (the
same files, with Accelerate's allow-list for its RNG states) and refuses the folder if any needs more.
"""

import os
import pickle
import shutil
from pathlib import Path

from accelerate.utils.other import load as accelerate_load

from train.config import ConfigError, latest_checkpoint, save_config


class CheckpointError(ValueError):
    """A checkpoint that could not be written (full disk, lost mount); the previous ones are untouched."""


class Progress:
    """Counters that must survive a resume; registered for checkpointing (state_dict / load_state_dict)."""

    def __init__(self):
        self.step = 0  # optimizer steps taken
        self.skipped_images = 0  # unreadable images skipped while training (skip_corrupt)
        self.nonfinite_steps = 0  # optimizer steps skipped for a NaN/inf loss, in all
        self.nonfinite_in_a_row = 0  # ... and how many of the last ones in a row

    def state_dict(self):
        return {"step": self.step, "skipped_images": self.skipped_images, "nonfinite_steps": self.nonfinite_steps,
                "nonfinite_in_a_row": self.nonfinite_in_a_row}  # fmt: skip

    def load_state_dict(self, state):
        self.step = int(state["step"])
        self.skipped_images = int(state["skipped_images"])
        self.nonfinite_steps = int(state.get("nonfinite_steps", 0))  # absent in checkpoints of older runs
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))


def checkpoint_folder(run_dir, step):
    return Path(run_dir) / "checkpoints" / f"step-{step:08d}"


def save_checkpoint(accelerator, *, run_dir, step, config, keep):
    """Every process calls this (each writes its RNG state); the main process renames and prunes."""
    final = checkpoint_folder(run_dir, step)
    partial = final.with_name(final.name + ".partial")
    if accelerator.is_main_process and partial.exists():
        shutil.rmtree(partial)  # left over by a crash: never resumed from, safe to redo
    accelerator.wait_for_everyone()
    try:
        accelerator.save_state(str(partial))
        if accelerator.is_main_process:
            save_config(config, partial / "config.yaml")
    except OSError as error:  # ENOSPC, EIO, a vanished mount: the .partial folder is dropped, the rest kept
        shutil.rmtree(partial, ignore_errors=True)
        previous = latest_checkpoint(run_dir)
        kept = f"the previous checkpoint {previous} is kept" if previous else "no earlier checkpoint exists"
        raise CheckpointError(f"{final}: cannot write the checkpoint ({error.strerror or error}); {kept}") from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():  # the same step saved twice (e.g. save_every hits the last step): keep the newer
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in complete_checkpoints(run_dir)[:-keep]:
            shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final


def complete_checkpoints(run_dir):
    folder = Path(run_dir) / "checkpoints"
    return sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".partial"))


def resolve_resume(resume, run_dir):
    """The checkpoint folder that `--resume` names: a path, or "latest" of the run folder."""
    if resume == "latest":
        found = latest_checkpoint(run_dir)
        if found is None:
            raise ConfigError(f"--resume latest: no complete checkpoint in {Path(run_dir) / 'checkpoints'}")
        return found
    path = Path(resume)
    if path.name.endswith(".partial"):
        raise ConfigError(f"{path}: a checkpoint that was never completed (its writer stopped); resume from another")
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path}: not a checkpoint folder of this toolkit (no config.yaml inside)")
    return path


PICKLED = (".pkl", ".bin", ".pt", ".pth")  # what save_state writes besides safetensors


def check_code_free(checkpoint):
    """Raise CheckpointError, naming the file, if a pickle in `checkpoint` would run code when loaded."""
    for path in sorted(p for p in Path(checkpoint).rglob("*") if p.suffix in PICKLED):
        try:
            accelerate_load(path, map_location="cpu", weights_only=True)  # restricted unpickler: runs no code
        except pickle.UnpicklingError as error:
            reason = " ".join(str(error).split("Check the documentation")[0].split())[:200]
            raise CheckpointError(
                f"{path}: refused: loading it would need more than tensors and plain values ({reason}); resume "
                "only from checkpoints you trust"
            ) from None
        except Exception as error:  # truncated or not a pickle at all
            raise CheckpointError(f"{path}: unreadable checkpoint file ({type(error).__name__}: {error})") from None


def run_dir_of(checkpoint):
    """<run>/checkpoints/step-N -> <run>."""
    return Path(checkpoint).resolve().parent.parent
