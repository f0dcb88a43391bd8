"""Putting the training data together: source -> (sub-images) -> usable pairs -> patches -> loader."""

import atexit
import functools
import multiprocessing
import signal

import torch

from sr_models.images import ImageError
from train.data.pairs import ImagePairs
from train.data.patches import PatchDataset, usable_images
from train.data.sources import load_source
from train.data.store import StorePairs, is_store
from train.data.subimages import prepare_subimages


def training_images(config):
    """The ImagePairs of the config's training source (prepared into sub-images if asked), or the StorePairs of a
    decoded store (train/data/store.py: nothing to decode or cut, so --subimage-size does not apply)."""
    if is_store(config.dataset):
        return StorePairs(config.dataset, scale=config.scale)
    dataset = load_source(
        config.dataset,
        split=config.split,
        image_column=config.image_column,
        lr_column=config.lr_column,
        lr_dataset=config.lr_dataset,
        cache_dir=config.cache_dir,
        scale=config.scale,
    )
    if config.subimage_size:
        dataset = prepare_subimages(
            dataset,
            scale=config.scale,
            size=config.subimage_size,
            step=config.subimage_step,
            num_proc=config.num_workers,
            cache_dir=config.cache_dir,
            skip_corrupt=config.skip_corrupt,
        )
    return ImagePairs(dataset, scale=config.scale, label=config.dataset)


def training_patches(config, *, length):
    """The PatchDataset of a config, and what was left out before training ({"small", "corrupt"})."""
    pairs = training_images(config)
    usable, left_out = usable_images(
        pairs, lr_patch_size=config.lr_patch_size, small_images=config.small_images, skip_corrupt=config.skip_corrupt
    )
    # The built-in set is small: decode it once. A store is decoded already (and shared, not copied).
    if (config.cache_images or config.dataset == "builtin") and isinstance(pairs, ImagePairs):
        pairs.cache_all(usable)
    patches = PatchDataset(
        pairs,
        lr_patch_size=config.lr_patch_size,
        length=length,
        seed=config.seed,
        flips=config.flips,
        rot90=config.rot90,
        small_images=config.small_images,
        skip_corrupt=config.skip_corrupt,
        usable=usable,
    )
    return patches, left_out


def resolve_lr_mode(config, pairs):
    """The LR mode a run trains with (config.lr_mode, `auto` resolved), or an ImageError when the data cannot give it:
    paired needs LR images; bicubic and degrade make LR from HR, so LR images the user gave would go unused."""
    has_lr = pairs.paired  # a store built from HR images alone holds bicubic LR, which is no pairing
    mode = config.lr_mode
    if mode == "auto":
        return "paired" if has_lr else "bicubic"
    if mode == "paired" and not has_lr:
        raise ImageError(
            f"{config.dataset}: lr_mode paired, but the data set has no LR images: give --lr-dataset <folder> or an "
            "lr column, or use lr_mode bicubic or degrade"
        )
    if mode in ("bicubic", "degrade") and has_lr:
        if isinstance(pairs, StorePairs):
            where = "the store's, made from pairs, or by a toolkit too old to record where its LR came from"
        else:
            where = f"--lr-dataset {config.lr_dataset}" if config.lr_dataset else "its LR column"
        raise ImageError(
            f"{config.dataset}: lr_mode {mode} makes each LR from its HR, but the data set has LR images ({where}) "
            "that would go unused: use lr_mode paired, or give HR images only (a store: prepare it from HR images only)"
        )
    return mode


def check_enough_images(patches, *, processes, batch_size, repeat_images, label):
    """Refuse, before any training, a data set with fewer usable images than one micro-batch of all processes
    takes: each of those patches should come from a different image (PatchDataset hands consecutive samples
    distinct images); with fewer, every micro-batch crops the same images again, which is rarely what was meant."""
    needed = processes * batch_size
    if len(patches.usable) < needed and not repeat_images:
        raise ImageError(
            f"{label}: too small for {processes} process(es) x batch size {batch_size}: {len(patches.usable)} usable "
            f"training image(s), but one micro-batch takes {needed} patches, each from a different image. Use more "
            "images, cut large ones into sub-images (--subimage-size), lower --batch-size, run fewer processes, or "
            "pass --repeat-images true to crop some images more than once per micro-batch"
        )


def training_loader(patches, *, batch_size, num_workers, persistent_workers, pin_memory=False):
    # No shuffling here: PatchDataset is already a seeded random stream, and a sequential order is what lets
    # skip_first_batches resume it exactly.
    if num_workers > 0:
        end_workers_at_exit()
    return torch.utils.data.DataLoader(
        patches,
        batch_size=batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=persistent_workers and num_workers > 0,
        pin_memory=pin_memory,
        worker_init_fn=leave_stop_signals_to_the_trainer,
    )


def leave_stop_signals_to_the_trainer(worker_id):
    """Ctrl-C reaches every process of the terminal's group, DataLoader workers included: they ignore it (and
    SIGTERM), so the training process alone decides how to stop, saves, and ends its workers itself; a worker
    would otherwise die with a KeyboardInterrupt traceback and take the run down with exit 1."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@functools.cache  # once per process
def end_workers_at_exit():
    """At exit, multiprocessing ends the daemonic children still alive with SIGTERM and waits for them: the workers
    ignore it (above), so a run that ends in an error while its loader is still held (by the traceback's frames)
    would wait forever. Registered after multiprocessing's own handler, this one runs first (atexit is last in,
    first out) and kills them; a worker holds nothing to save."""

    def kill_daemonic_children():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would take the kill for a worker's crash
        for child in multiprocessing.active_children():
            if child.daemon:
                child.kill()

    atexit.register(kill_daemonic_children)
