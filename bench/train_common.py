"""Shared by the training benchmarks: synthetic 2K photographs, and running train/run.py in this process."""

import json
from pathlib import Path

import numpy as np
from PIL import Image

from sr_models.builtin import BUILTIN_TRAIN, builtin_folder

DIV2K_SIZE = (2040, 1356)  # a typical DIV2K HR image (width, height)


def make_2k_images(folder, count=8, seed=0):
    """`count` DIV2K-sized PNGs made from the built-in photographs, enlarged, with a little grain so that they
    weigh (and decode) like real 2K photographs (a few MB each) rather than like smooth enlargements."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted(folder.glob("*.png"))
    if len(paths) >= count:
        return paths[:count]
    rng = np.random.default_rng(seed)
    sources = [n for n in BUILTIN_TRAIN if n.endswith((".png", ".jpg"))]
    for i in range(count):
        with Image.open(builtin_folder() / sources[i % len(sources)]) as image:
            big = np.asarray(image.convert("RGB").resize(DIV2K_SIZE, Image.BICUBIC), dtype=np.float32)
        grain = rng.normal(0, 4, size=big.shape)
        Image.fromarray(np.clip(big + grain, 0, 255).astype(np.uint8)).save(folder / f"{i:04d}.png")
    return sorted(folder.glob("*.png"))[:count]


def run_training(config):
    """train/run.py's train(config) in this process, from a clean Accelerate state, the run folder let go as its
    main does; returns the run folder."""
    from accelerate.state import AcceleratorState, GradientState

    from train.run import train
    from train.run_folder import RunFolderLock

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    try:
        return train(config)
    finally:
        RunFolderLock.release_all()


def logged_windows(run_dir):
    """The per-window figures of a run's log (one record per log_every steps)."""
    lines = (Path(run_dir) / "log.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "samples_per_second" in r]
