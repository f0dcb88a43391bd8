"""Smooth held-out images for int8: where PAN's residual is near zero and int8 rounding noise shows (issue #18).

Synthetic "smooth photos" (a random low-frequency field, random colour ramps, Gaussian noise of a given sigma),
RGB and grey gradient ramps, a radial gradient, and small crops of Set5's smooth regions (the bird's blurred
background; ../shared, skipped when absent). Each is a pure function of its parameters (numpy seeds), HR as drawn,
LR by MATLAB bicubic (like bench/held_out.py). None of them calibrates or checks parity.

Two lists: TUNING, the images that the int8 choices in docs/int8.md ("Smooth content") were looked at on, and
ASIDE, scored once at the end of that round and not used to choose anything.
"""

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from bench.held_out import SET5
from export.parity import ParityImage
from sr_models.evaluation.samples import sample_from_hr


def smooth_photo(h, w, sigma, seed):
    """A smooth "photo": low-frequency random field plus per-channel ramps plus Gaussian noise (sigma, levels)."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(h, w, 3)), sigma=(min(h, w) / 6, min(h, w) / 6, 0))
    field = field / (np.abs(field).max() + 1e-9)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    ramps = sum(rng.uniform(-1, 1, 3)[None, None] * c[..., None] for c in (x, y))
    image = 128 + 55 * field + 50 * ramps + rng.normal(0, sigma, (h, w, 3))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def rgb_ramp(h, w, *, flip=False):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r, g, b = 255 * x / (w - 1), 255 * y / (h - 1), 255 * (x + y) / (w + h - 2)
    return np.clip(np.round(np.stack([g, b, r] if flip else [r, g, b], -1)), 0, 255).astype(np.uint8)


def grey_ramp(h, w, *, vertical=False):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    value = 255 * (y / (h - 1) if vertical else x / (w - 1))
    return np.repeat(np.round(value)[..., None], 3, -1).astype(np.uint8)


def radial(h, w):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = np.hypot(y - h / 2, x - w / 2) / np.hypot(h / 2, w / 2)
    return np.clip(np.round(np.stack([230 - 150 * r, 60 + 120 * r, 200 - 80 * r**2], -1)), 0, 255).astype(np.uint8)


def set5_crop(name, size, offset=None):
    """(h, w) crop of a Set5 HR image at offset (y, x), centred when None; None without ../shared."""
    path = SET5 / "HR" / f"{name}.png"
    if not path.is_file():
        return None
    image = np.asarray(Image.open(path).convert("RGB"))
    (h, w), (ch, cw) = image.shape[:2], size
    y, x = offset if offset else ((h - ch) // 2, (w - cw) // 2)
    return image[y : y + ch, x : x + cw]


# name -> HR maker; HR sizes are (h, w)
TUNING = {
    "bird_c60": lambda: set5_crop("bird", (60, 60)),
    "smooth120x160_s2": lambda: smooth_photo(120, 160, 2, 1),
    "smooth77x101_s05": lambda: smooth_photo(77, 101, 0.5, 2),
    "rgbramp96x128": lambda: rgb_ramp(96, 128),
    "greyramp96x128": lambda: grey_ramp(96, 128),
    "smooth96x128_s1": lambda: smooth_photo(96, 128, 1, 3),
    "smooth64x64_s05": lambda: smooth_photo(64, 64, 0.5, 4),
    "smooth100x80_s3": lambda: smooth_photo(100, 80, 3, 5),
    "rgbramp_flip100x140": lambda: rgb_ramp(100, 140, flip=True),
    "greyramp_v80x120": lambda: grey_ramp(80, 120, vertical=True),
    "baby_c80": lambda: set5_crop("baby", (80, 80)),
    "bird_168_36": lambda: set5_crop("bird", (60, 60), (168, 36)),
    "bird_156_84": lambda: set5_crop("bird", (60, 60), (156, 84)),
    "bird_120_60": lambda: set5_crop("bird", (60, 60), (120, 60)),
    "bird_24_0": lambda: set5_crop("bird", (60, 60), (24, 0)),
}
ASIDE = {
    "smooth112x144_s1": lambda: smooth_photo(112, 144, 1, 101),
    "smooth88x88_s05": lambda: smooth_photo(88, 88, 0.5, 102),
    "smooth140x100_s2": lambda: smooth_photo(140, 100, 2, 103),
    "smooth72x124_s0": lambda: smooth_photo(72, 124, 0.0, 104),
    "rgbramp_flip160x96": lambda: rgb_ramp(160, 96, flip=True),
    "radial120": lambda: radial(120, 120),
    "bird_16_16_80": lambda: set5_crop("bird", (80, 80), (16, 16)),
    "head_c64": lambda: set5_crop("head", (64, 64)),
    "bird_162_30_64": lambda: set5_crop("bird", (64, 64), (162, 30)),
    "bird_30_6_64": lambda: set5_crop("bird", (64, 64), (30, 6)),
    "bird_198_90_64": lambda: set5_crop("bird", (64, 64), (198, 90)),
}


def smooth_images(*, scale, aside=False):
    """ParityImages of TUNING (or ASIDE): HR mod-cropped to `scale`, LR by MATLAB bicubic; Set5 crops only with
    ../shared."""
    pairs = []
    for name, make in (ASIDE if aside else TUNING).items():
        hr = make()
        if hr is not None:
            sample = sample_from_hr(name, hr, scale)
            pairs.append(ParityImage(name, sample.lr, np.ascontiguousarray(sample.hr)))
    return pairs
