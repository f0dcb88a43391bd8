"""Random aligned LR/HR training patches, and the small-image rule.

The sample at position i of the run is a pure function of (seed, i): which image, where the patch is, which flips.
So a run resumed at step N (skipping N x batches) sees exactly the patches an uninterrupted run sees, with any
number of workers.
"""

import sys

import numpy as np
import torch

from sr_models.images import ImageError


class PatchDataset(torch.utils.data.Dataset):
    """`length` random aligned patches: {"lr": (3, p, p) uint8, "hr": (3, p*s, p*s) uint8, "skipped": int}.

    Sample i takes image `order(i // n)[i % n]` of the n usable images (a fresh seeded permutation per pass), so
    every image is used once per pass; its crop and flips come from a generator seeded with (seed, i).
    """

    def __init__(
        self,
        pairs,
        *,
        lr_patch_size,
        length,
        seed=0,
        flips=True,
        rot90=True,
        small_images="error",
        skip_corrupt=False,
        usable=None,
    ):
        self.pairs = pairs
        self.scale = pairs.scale
        self.patch = lr_patch_size
        self.length = length
        self.seed = seed
        self.flips, self.rot90 = flips, rot90
        self.small_images = small_images
        self.skip_corrupt = skip_corrupt
        self.usable = list(range(len(pairs))) if usable is None else list(usable)
        if not self.usable:
            raise ImageError(f"{pairs.label}: no usable training images")
        self.warned = set()
        self._order = (None, None)

    def __len__(self):
        return self.length

    def order(self, epoch):
        if self._order[0] != epoch:  # one permutation per pass over the images, computed once per worker
            self._order = (epoch, np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.usable)))
        return self._order[1]

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, index])
        n = len(self.usable)
        position = int(self.order(index // n)[index % n])
        skipped = 0
        for attempt in range(n):
            image = self.usable[(position + attempt) % n]
            try:
                hr, lr = self.pairs.load(image)
                break
            except ImageError as error:
                if not self.skip_corrupt:
                    raise
                skipped += 1
                if image not in self.warned:  # once per file and worker
                    self.warned.add(image)
                    print(f"warning: skipped {error}", file=sys.stderr)
        else:
            raise ImageError(f"{self.pairs.label}: every image failed to load")
        lr, hr = self.fit(lr, hr, name=self.pairs.name(image))
        lr_patch, hr_patch = self.crop(lr, hr, rng)
        return {
            "lr": torch.from_numpy(np.ascontiguousarray(lr_patch.transpose(2, 0, 1))),  # (3, p, p)
            "hr": torch.from_numpy(np.ascontiguousarray(hr_patch.transpose(2, 0, 1))),  # (3, p*s, p*s)
            "skipped": skipped,
            "index": index,  # the sample's position in the run: what its degradation (lr_mode degrade) is drawn from
        }

    def fit(self, lr, hr, *, name):
        """Apply the small-image rule to an LR image smaller than the patch."""
        short_h, short_w = max(0, self.patch - lr.shape[0]), max(0, self.patch - lr.shape[1])
        if not (short_h or short_w):
            return lr, hr
        if self.small_images != "pad":  # "skip" images were left out before training
            raise small_image_error(name, lr.shape, self.patch, self.scale)
        # Symmetric (edge-repeating) padding keeps LR and HR aligned: LR row h+k mirrors row h-1-k, and the HR
        # rows of LR row h+k mirror the HR rows of row h-1-k.
        s = self.scale
        lr = np.pad(lr, ((0, short_h), (0, short_w), (0, 0)), mode="symmetric")
        hr = np.pad(hr, ((0, short_h * s), (0, short_w * s), (0, 0)), mode="symmetric")
        return lr, hr

    def crop(self, lr, hr, rng):
        p, s = self.patch, self.scale
        top = int(rng.integers(0, lr.shape[0] - p + 1))
        left = int(rng.integers(0, lr.shape[1] - p + 1))
        lr = lr[top : top + p, left : left + p]
        hr = hr[top * s : (top + p) * s, left * s : (left + p) * s]
        hflip, vflip, transpose = rng.random(3) < 0.5  # drawn whatever the options, so they don't shift crops
        if self.flips and hflip:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if self.flips and vflip:
            lr, hr = lr[::-1], hr[::-1]
        if self.rot90 and transpose:  # with both flips: all 8 rotations and mirror images
            lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
        return lr, hr


def small_image_error(name, lr_shape, patch, scale):
    if min(lr_shape[:2]) == 0:  # its mod-crop is empty: "LR 0x0 (HR 0x0)" would not say what the file is
        return ImageError(
            f"{name}: narrower or lower than {scale} pixels, so at x{scale} it has no LR pixel at all; "
            "remove it, or use --small-images skip"
        )
    return ImageError(
        f"{name}: too small for the patch: LR {lr_shape[1]}x{lr_shape[0]} (HR {lr_shape[1] * scale}x"
        f"{lr_shape[0] * scale}) < LR patch {patch}x{patch}; use --small-images skip or pad, or a smaller "
        "--lr-patch-size"
    )


def usable_images(pairs, *, lr_patch_size, small_images, skip_corrupt):
    """Indices of images to train on, after the small-image rule and, with skip_corrupt, unreadable headers.

    Returns (indices, {"small": n, "corrupt": n, "small_names": [...], "corrupt_names": [...]}): the files left
    out are named, for the log and the console. Only headers are read, so this is quick even for DIV2K.
    """
    usable, left_out = [], {"small": 0, "corrupt": 0, "small_names": [], "corrupt_names": []}
    for index in range(len(pairs)):
        try:
            height, width = pairs.lr_size(index)
        except ImageError as error:
            if not skip_corrupt:
                raise
            print(f"warning: skipped {error}", file=sys.stderr)
            left_out["corrupt"] += 1
            left_out["corrupt_names"].append(pairs.name(index))
            continue
        if min(height, width) < lr_patch_size:
            # An image smaller than the scale has no LR pixel to pad from: refused even with "pad".
            if small_images == "error" or (small_images == "pad" and min(height, width) == 0):
                raise small_image_error(pairs.name(index), (height, width), lr_patch_size, pairs.scale)
            if small_images == "skip":
                left_out["small"] += 1
                left_out["small_names"].append(pairs.name(index))
                continue
        usable.append(index)
    return usable, left_out
