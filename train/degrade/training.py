"""lr_mode degrade inside a run: the run's Degrader, its degraded validation sets, the preview grid, the log summary.

The degradation itself (train/degrade/pipeline.py) knows nothing of runs; this module is the seam the trainer uses.
"""

from dataclasses import replace

import numpy as np
import torch

from sr_models.evaluation.samples import Sample
from sr_models.images import save_rgb
from train.config import degrade_options
from train.degrade.pipeline import Degrader, summarize

# Fixed, whatever the run's --seed: the degraded validation images are the same in every run, so their figures
# compare between runs (and between recipes) the way the clean ones do.
VALIDATION_SEED = 0xDE6A
PREVIEW_FILE = "preview/degradations.png"
PREVIEW_PATCHES = 8
GAP = 4


def make_degrader(config):
    """The Degrader of a run: each patch's degradation is a pure function of (--seed, the patch's position in the
    run), so a resumed run draws what the uninterrupted one would, and two processes (which take different
    positions) never draw the same."""
    return Degrader(options=degrade_options(config.degradations), scale=config.scale, seed=config.seed)


def degraded_sets(sets, config):
    """The validation sets of a degrade run: the clean sets as they were (first: `val/psnr_y` and the best weights
    mean the clean set in every mode), then each set degraded once as `<label>-degraded`, image k of a set with the
    fixed VALIDATION_SEED and position k, by the run's options without their bicubic share: the same images in
    every run with the same degradation options, whatever its --seed."""
    degrader = Degrader(
        options=replace(degrade_options(config.degradations), bicubic_share=0.0),
        scale=config.scale,
        seed=VALIDATION_SEED,
    )
    degraded = {}
    for label, samples in sets.items():
        degraded[f"{label}-degraded"] = []
        for position, sample in enumerate(samples):
            hr = torch.from_numpy(np.ascontiguousarray(sample.hr.transpose(2, 0, 1)))[None].float().div_(255)
            lr, _ = degrader(hr, [position])
            lr = (lr[0] * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy()
            degraded[f"{label}-degraded"].append(Sample(sample.name, lr, sample.hr))
    return {**sets, **degraded}


def write_preview(path, patches, degrader, *, count=PREVIEW_PATCHES):
    """`path` (<run>/preview/degradations.png): the run's first `count` patches, each as its degraded LR (pixels
    repeated to the HR's size) beside its HR, one pair per row: what the network will be shown, before hours are
    spent.
    Returns the drawn parameters of those patches."""
    samples = [patches[index] for index in range(min(count, len(patches)))]
    hr = torch.stack([s["hr"] for s in samples]).float().div_(255)
    bicubic = torch.stack([s["lr"] for s in samples]).float().div_(255)
    lr, drawn = degrader(hr, [s["index"] for s in samples], bicubic_lr=bicubic)
    scale = degrader.scale
    rows = []
    for degraded, sharp in zip(lr, hr):
        big = degraded.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
        gap = torch.ones(3, sharp.shape[1], GAP)
        rows.append(torch.cat([big, gap, sharp], dim=2))
        rows.append(torch.ones(3, GAP, rows[-1].shape[2]))
    grid = torch.cat(rows[:-1], dim=1)
    save_rgb(path, (grid * 255).round().clamp(0, 255).byte().permute(1, 2, 0).numpy())
    return drawn


class DrawnWindow:
    """The drawn parameters of the patches between two log lines, summarised for log.jsonl (this process's)."""

    def __init__(self):
        self.drawn = []

    def add(self, drawn):
        self.drawn.extend(drawn)

    def summary(self):
        summary, self.drawn = summarize(self.drawn), []
        return summary
