"""Held-out validation samples of a config's --val-dataset (several sets: comma-separated)."""

from dataclasses import replace
from pathlib import Path

from sr_models.builtin import BUILTIN_HELD_OUT, builtin_folder
from sr_models.evaluation.samples import (
    Sample,
    is_benchmark_root,
    load_benchmark,
    load_benchmark_root,
    sample_from_hr,
)
from sr_models.images import load_rgb
from train.data.pairs import ImagePairs
from train.data.sources import is_saved_dataset, load_source


def validation_samples(config):
    """Held-out `Sample`s (for sr_models.evaluation.scoring): LR by MATLAB bicubic unless the source has LR images."""
    source, scale = config.val_dataset, config.scale
    if source == "none":
        return []
    if source == "builtin":
        samples = [
            sample_from_hr(Path(name).stem, load_rgb(builtin_folder() / name), scale) for name in BUILTIN_HELD_OUT
        ]
    elif is_benchmark_root(source):
        samples = load_benchmark_root(source, scale=scale)
    elif Path(source).is_dir() and not is_saved_dataset(source):
        samples = load_benchmark(source, scale=scale)
    else:
        pairs = ImagePairs(
            load_source(source, split=config.val_split, cache_dir=config.cache_dir, scale=scale),
            scale=scale,
            label=source,
        )
        count = min(len(pairs), config.val_images or len(pairs))
        samples = []
        for index in range(count):
            hr, lr = pairs.load(index)
            samples.append(Sample(Path(pairs.name(index)).stem, lr, hr))
    return samples[: config.val_images] if config.val_images else samples


def validation_sets(config):
    """{label: samples} for each source of `--val-dataset A,B` (e.g. {"Set5": [...], "Set14": [...]}); the label is
    the folder's name. An empty dict for `none`."""
    sets = {}
    for source in [s.strip() for s in config.val_dataset.split(",") if s.strip()]:
        samples = validation_samples(replace(config, val_dataset=source))
        if samples:
            sets[set_label(source, sets)] = samples
    return sets


def set_label(source, taken):
    """A short name for a validation source: the folder's name (Set5), `builtin`, or a hub name; unique."""
    label = Path(source).name if Path(source).exists() else source
    base, n = label, 2
    while label in taken:
        label, n = f"{base}-{n}", n + 1
    return label
