"""Random resizes of the degradation pipeline, and the final resize to the LR size."""

import torch.nn.functional as F

from train.degrade.kernels import normalized
from train.degrade.options import RESIZE_KINDS


def draw_resize(rng, *, probs, scale_range, modes):
    """Up, down or keep (by `probs`), a scale (up: 1..high, down: low..1) and an interpolation of `modes`."""
    kind = RESIZE_KINDS[int(rng.choice(len(RESIZE_KINDS), p=normalized(probs)))]
    if kind == "up":
        scale = float(rng.uniform(1, scale_range[1]))
    elif kind == "down":
        scale = float(rng.uniform(scale_range[0], 1))
    else:
        scale = 1.0
    return {"kind": kind, "scale": scale, "mode": modes[int(rng.integers(len(modes)))]}


def resize(img, size, mode):
    """`img` (B, C, h, w) to `size` (H, W), at least 1x1. Bilinear and bicubic downscaling are antialiased (torch
    offers it for them): without it they alias (sample) rather than average; area always averages."""
    size = (max(1, int(size[0])), max(1, int(size[1])))
    if tuple(img.shape[-2:]) == size:
        return img
    if mode == "area":
        return F.interpolate(img, size=size, mode="area")
    shrinking = size[0] < img.shape[-2] or size[1] < img.shape[-1]
    return F.interpolate(img, size=size, mode=mode, align_corners=False, antialias=shrinking)


def final_size(hr_shape, scale):
    """The LR size of an HR patch (..., H, W): exactly (H // scale, W // scale)."""
    return hr_shape[-2] // scale, hr_shape[-1] // scale
