"""Checkpoints: Accelerate's save_state/load_state in folders that appear complete or not at all.

A checkpoint is `<run>/checkpoints/step-00001000/`: what `accelerator.save_state` writes (model, optimizer,
scheduler, grad scaler, RNG states of every process, and the objects given to `register_for_checkpointing`:
the step counter and the EMA weights) plus the resolved `config.yaml`, so a checkpoint describes itself.
It is written as `step-00001000.partial/` and renamed when every process has finished writing: a folder
without the suffix is always complete, and `--resume latest` never picks up a half-written one.

Resuming runs no code from the checkpoint: Accelerate's `load_state` unpickles the registered objects with
`weights_only=False`, so `check_code_free` first loads every pickle of the folder with `weights_only=True` (the
same files, with Accelerate's allow-list for its RNG states) and refuses the folder if any needs more; and
`check_fits` refuses weights or optimizer state whose tensors do not have this run's shapes (another run's files),
which load_state would meet with a traceback (the weights) or load and fail on at the first optimizer step.
"""

import hashlib
import json
import os
import pickle
import shutil
from pathlib import Path

import torch
from accelerate.utils.other import load as accelerate_load
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from sr_models.errors import UserError
from sr_models.files import atomic_write_text
from train.config import ConfigError, latest_checkpoint, save_config


class CheckpointError(UserError):
    """A checkpoint that could not be written (full disk, lost mount); the previous ones are untouched."""


class Progress:
    """Counters that must survive a resume; registered for checkpointing (state_dict / load_state_dict)."""

    def __init__(self):
        self.step = 0  # optimizer steps taken
        self.skipped_images = 0  # unreadable images skipped while training (skip_corrupt)
        self.nonfinite_steps = 0  # optimizer steps skipped for a NaN/inf loss, in all
        self.nonfinite_in_a_row = 0  # ... and how many of the last ones in a row

    def state_dict(self):
        return {
            "step": self.step,
            "skipped_images": self.skipped_images,
            "nonfinite_steps": self.nonfinite_steps,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
        }

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
        accelerator.wait_for_everyone()  # every process's RNG file is written before the manifest lists them
        if accelerator.is_main_process:
            write_manifest(partial)
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


def load_checkpoint(accelerator, resume, *, run_dir, model, optimizer, registered):
    """Load the checkpoint that `--resume` names into the prepared `model`, `optimizer`, ... and the `registered`
    objects (register_for_checkpointing); returns its folder. Verified first: complete, undamaged, no pickle that
    runs code (load_state unpickles with weights_only=False), finite weights, tensors of this run's shapes
    (another run's tensors: one line, not a traceback)."""
    needs = files_load_state_reads(accelerator, registered=registered)
    checkpoint = resolve_resume(resume, run_dir, say=accelerator.print, needs=needs)
    check_fits(checkpoint, model=accelerator.unwrap_model(model), optimizer=optimizer)
    accelerator.load_state(str(checkpoint))
    return checkpoint


def resume_options(run_dir):
    """What continues a run from its newest complete checkpoint, for the lines that say how."""
    return f"--resume latest --output-dir {run_dir}"


def complete_checkpoints(run_dir):
    folder = Path(run_dir) / "checkpoints"
    return sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".partial"))


def resolve_resume(resume, run_dir, *, say=print, needs=()):
    """The checkpoint folder that `--resume` names, verified: a path, or the newest intact one of the run folder
    ("latest": a damaged newest checkpoint is passed over, saying so). `needs`: the files resuming will load
    (files_load_state_reads): a checkpoint without one of them is incomplete, whatever its manifest says."""
    if resume == "latest":
        candidates = complete_checkpoints(run_dir)
        if not candidates:
            raise ConfigError(f"--resume latest: no complete checkpoint in {Path(run_dir) / 'checkpoints'}")
        problems = []
        for newer, checkpoint in zip([None, *candidates[::-1]], candidates[::-1]):
            try:
                verify_checkpoint(checkpoint, needs=needs)
            except CheckpointError as error:
                problems.append(str(error))
                if len(candidates) > 1:
                    say(f"warning: {error}")
                continue
            if newer is not None:
                say(f"resuming from {checkpoint.name}, the newest intact checkpoint")
            return checkpoint
        if len(problems) == 1:
            raise CheckpointError(problems[0])
        raise CheckpointError(
            f"--resume latest: every checkpoint in {Path(run_dir) / 'checkpoints'} is damaged; the "
            f"newest: {problems[0]}"
        )
    path = Path(resume)
    if path.name.endswith(".partial"):
        raise ConfigError(f"{path}: a checkpoint that was never completed (its writer stopped); resume from another")
    if not (path / "config.yaml").is_file():
        raise ConfigError(f"{path}: not a checkpoint folder of this toolkit (no config.yaml inside)")
    verify_checkpoint(path, needs=needs)
    return path


MANIFEST = "manifest.json"


def file_digest(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(folder):
    """Size and SHA-256 of every file of a checkpoint, so that damage (a truncated copy, flipped bits) is found
    before resuming instead of being loaded as weights or optimizer state."""
    files = sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.name != MANIFEST)
    entries = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": file_digest(p)} for p in files}
    atomic_write_text(Path(folder) / MANIFEST, json.dumps(entries, indent=1, sort_keys=True) + "\n")


def files_load_state_reads(accelerator, *, registered):
    """The files `accelerator.load_state` will read in this process (names as Accelerate's save_state writes them),
    for a run that registered `registered` objects for checkpointing."""
    names = ["model.safetensors", "optimizer.bin", "scheduler.bin", f"random_states_{accelerator.process_index}.pkl"]
    names += [f"custom_checkpoint_{index}.pkl" for index in range(registered)]
    if accelerator.scaler is not None:  # fp16's loss scaling
        names.append("scaler.pt")
    return names


def verify_checkpoint(folder, *, needs=()):
    """CheckpointError naming the file if a checkpoint is incomplete (without one of the files in `needs`) or
    damaged (its manifest missing included); then no pickle runs code, and the model weights are finite."""
    folder = Path(folder)
    missing = [name for name in needs if not (folder / name).is_file()]
    if missing:  # a file removed together with its manifest entry: load_state would fail on it with a traceback
        raise CheckpointError(
            f"{folder / missing[0]}: missing: the checkpoint {folder} is incomplete (resuming loads it)"
        )
    manifest_path = folder / MANIFEST
    if manifest_path.is_file():
        try:
            entries = json.loads(manifest_path.read_text())
        except (OSError, ValueError, RecursionError) as error:  # RecursionError: JSON nested thousands deep
            raise CheckpointError(f"{manifest_path}: unreadable ({error}): the checkpoint is damaged") from None
        check_manifest(entries, folder)
        for name, entry in entries.items():
            path = folder / name
            if not path.is_file():
                raise CheckpointError(f"{path}: missing: the checkpoint {folder} is incomplete")
            if path.stat().st_size != entry["bytes"] or file_digest(path) != entry["sha256"]:
                raise CheckpointError(f"{path}: damaged (its size or content changed since it was written)")
    else:  # every checkpoint this toolkit writes carries one: without it, damage could not be found
        raise CheckpointError(
            f"{manifest_path}: missing: without it the checkpoint's files cannot be checked for "
            "damage; resume from another checkpoint"
        )
    check_code_free(folder)
    weights = folder / "model.safetensors"
    if weights.is_file():
        try:
            state = load_file(str(weights))
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"{weights}: unreadable ({error})") from None
        for key, tensor in state.items():
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
                raise CheckpointError(
                    f"{weights}: tensor {key} holds NaN or infinite values: this checkpoint's "
                    "model is broken; resume from an earlier one"
                )


REQUIRED = ("model.safetensors", "config.yaml")  # what every checkpoint of this toolkit holds


def check_manifest(entries, folder):
    """CheckpointError naming the manifest and the entry unless it has the structure write_manifest gives: a
    mapping of relative paths inside the folder to {"bytes": int >= 0, "sha256": 64 hex digits}, listing exactly
    the folder's files (a file added or an entry removed is named: an unlisted file would be loaded unchecked),
    the model and config.yaml among them."""
    manifest = Path(folder) / MANIFEST
    if not isinstance(entries, dict):
        raise CheckpointError(
            f"{manifest}: not a mapping of file names to sizes and digests: the checkpoint is damaged"
        )
    for name, entry in entries.items():
        parts = Path(name).parts
        if Path(name).is_absolute() or ".." in parts or not parts or name == MANIFEST:
            raise CheckpointError(
                f"{manifest}: entry {name!r} is not a file inside the checkpoint: the manifest was edited or damaged"
            )
        ok = (
            isinstance(entry, dict)
            and set(entry) == {"bytes", "sha256"}
            and type(entry["bytes"]) is int
            and entry["bytes"] >= 0
            and isinstance(entry["sha256"], str)
            and len(entry["sha256"]) == 64
            and not set(entry["sha256"]) - set("0123456789abcdef")
        )
        if not ok:
            raise CheckpointError(
                f"{manifest}: entry {name!r} is {entry!r}, not {{'bytes': size, 'sha256': hex "
                "digest}: the manifest was edited or damaged"
            )
    on_disk = {str(p.relative_to(folder)) for p in Path(folder).rglob("*") if p.is_file() and p.name != MANIFEST}
    unlisted = sorted(on_disk - set(entries))
    if unlisted:
        raise CheckpointError(
            f"{Path(folder) / unlisted[0]}: not listed in {manifest}"
            f"{f' (nor {len(unlisted) - 1} more)' if len(unlisted) > 1 else ''}: a file added "
            "after the checkpoint was written, or a manifest edited; the checkpoint cannot be "
            "trusted"
        )
    absent = [name for name in REQUIRED if name not in entries]
    if absent:
        raise CheckpointError(
            f"{manifest}: does not list {', '.join(absent)}: every checkpoint holds them; the "
            "manifest was edited or damaged"
        )


PICKLED = (".pkl", ".bin", ".pt", ".pth")  # what save_state writes besides safetensors
# What a weights-only load says when a pickle names a class or function: loading it would need more than tensors.
# Any other failure (unknown opcodes, a truncated file) means the bytes are no pickle of ours: unreadable.
NEEDS_CODE = ("GLOBAL", "unrecognized function", "Can only create", "Can only build")


def state_kind(path):
    """What save_state keeps in this file, for messages."""
    name = Path(path).name
    kinds = {
        "optimizer": "optimizer state",
        "scheduler": "scheduler state",
        "random_states": "random number state",
        "custom_checkpoint": "training state",
        "scaler": "loss-scaler state",
    }
    return next((kind for prefix, kind in kinds.items() if name.startswith(prefix)), "checkpoint file")


def check_code_free(checkpoint):
    """Raise CheckpointError, naming the file, if a pickle in `checkpoint` would run code when loaded, or is no
    pickle at all (garbage bytes are unreadable, not a pickle that needs code)."""
    for path in sorted(p for p in Path(checkpoint).rglob("*") if p.suffix in PICKLED):
        try:
            accelerate_load(path, map_location="cpu", weights_only=True)  # restricted unpickler: runs no code
        except pickle.UnpicklingError as error:
            reason = " ".join(str(error).split("Check the documentation")[0].split())
            reason = reason.split("WeightsUnpickler error: ")[-1][:200]  # torch's advice is not the reason
            if not any(marker in reason for marker in NEEDS_CODE):
                raise CheckpointError(
                    f"{path}: not a readable {state_kind(path)} ({reason}): the checkpoint is "
                    "damaged; resume from another checkpoint"
                ) from None
            raise CheckpointError(
                f"{path}: refused: loading it would need more than tensors and plain values ({reason}); resume "
                "only from checkpoints you trust"
            ) from None
        except Exception as error:  # truncated or not a pickle at all
            raise CheckpointError(
                f"{path}: not a readable {state_kind(path)} ({type(error).__name__}: {error})"
            ) from None


# ---------------------------------------------------------------------------------------------------------------
# A checkpoint fits the run that resumes it: the same tensor names and shapes (another run's files do not)


def check_fits(checkpoint, *, model, optimizer):
    """CheckpointError naming the file and its first misfit unless the checkpoint's weights and optimizer state
    have the names and shapes of this run's `model` (unwrapped: the file holds its names, never DDP's `module.`)
    and `optimizer` (as prepared: the one load_state fills).
    Run after verify_checkpoint (the files are intact and code-free); reads the weights' header only."""
    checkpoint = Path(checkpoint)
    weights = checkpoint / "model.safetensors"
    misfit = weights_misfit(weights, model.state_dict())
    if misfit:
        raise CheckpointError(f"{weights}: does not fit this run's model ({misfit}); it is not this run's checkpoint")
    state = checkpoint / "optimizer.bin"
    misfit = optimizer_misfit(state, optimizer, names={id(p): n for n, p in model.named_parameters()})
    if misfit:
        raise CheckpointError(f"{state}: does not fit this run's optimizer ({misfit}); it is not this run's checkpoint")


def shape_text(shape):
    return "x".join(str(size) for size in shape) if len(shape) else "a scalar"


def weights_misfit(path, expected):
    """The first tensor of the safetensors file `path` (names and shapes from its header: nothing is unpickled
    or loaded) that differs from the state dict `expected`, in words; None if all fit."""
    with safe_open(str(path), framework="pt") as f:
        found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    for name, tensor in expected.items():
        if name not in found:
            shared = any(tensor.data_ptr() == other.data_ptr() for key, other in expected.items() if key in found)
            if not shared:  # save_state writes one name of tensors that share storage (tied weights)
                return f"{name} is {shape_text(tensor.shape)} here, not in the file"
        elif tuple(tensor.shape) != found[name]:
            return f"{name} is {shape_text(tensor.shape)} here, {shape_text(found[name])} in the file"
    extra = sorted(set(found) - set(expected))
    return f"{extra[0]} is in the file, not in this model" if extra else None


def optimizer_misfit(path, optimizer, *, names):
    """The first difference, in words, between the optimizer state in `path` and `optimizer`: the number of
    parameter groups, of parameters in each, and each parameter's state tensors (Adam's exp_avg, SGD's momentum)
    against the parameter it belongs to, in order; None if all fit. `names`: id(parameter) -> its model name."""
    saved = accelerate_load(path, map_location="cpu", weights_only=True)  # code-free: check_code_free passed
    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    states = saved.get("state") if isinstance(saved, dict) else None
    if (
        not isinstance(groups, list)
        or not isinstance(states, dict)
        or not all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
    ):
        return "not an optimizer's state_dict: no param_groups and state"
    here = optimizer.param_groups
    if len(groups) != len(here):
        return f"{len(here)} parameter group(s) here, {len(groups)} in the file"
    for number, (group, mine) in enumerate(zip(groups, here)):
        if len(group["params"]) != len(mine["params"]):
            return f"group {number} holds {len(mine['params'])} parameters here, {len(group['params'])} in the file"
        for index, parameter in zip(group["params"], mine["params"]):
            state = states.get(index, {})
            for key, value in state.items() if isinstance(state, dict) else ():
                # "step" is a count (a 0-d tensor), the rest are per-element moments shaped like the parameter
                if key != "step" and isinstance(value, torch.Tensor) and value.shape != parameter.shape:
                    name = names.get(id(parameter), f"parameter {index}")
                    return (
                        f"{key} of {name} is {shape_text(value.shape)} in the file, the parameter is "
                        f"{shape_text(parameter.shape)} here"
                    )
    return None


def run_dir_of(checkpoint):
    """<run>/checkpoints/step-N -> <run>."""
    return Path(checkpoint).resolve().parent.parent
