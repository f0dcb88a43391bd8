"""PSNR and SSIM as the published SR numbers measure them (docs/evaluation.md).

numpy only, float64 throughout. Images are HxWx3 uint8 RGB: the model output is rounded to uint8 first
(`to_uint8`), then compared on the BT.601 luma channel (Y, unrounded) or on RGB, with `crop` pixels cut from
every side. SSIM is the Wang et al. 2004 / MATLAB reference: 11x11 Gaussian window (sigma 1.5), statistics over
the valid region only, mean of the map; the RGB variant is the mean of the per-channel SSIMs, as in BasicSR.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from sr_models.errors import UserError

# ITU-R BT.601 luma for R, G, B in [0, 255], as MATLAB's rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255.
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966]) / 255.0

_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _gaussian_taps(size=11, sigma=1.5):
    """The 1-D factor of MATLAB's fspecial('gaussian', 11, 1.5): the 2-D window is its outer product."""
    x = np.arange(size) - (size - 1) / 2
    taps = np.exp(-(x**2) / (2 * sigma**2))
    return taps / taps.sum()


_TAPS = _gaussian_taps()


def to_uint8(x):
    """Float image in [0, 1] -> uint8: clamp, times 255, round half to even (numpy/torch `round`, as BasicSR).

    Element-wise and shape-preserving: an HxWx3 array stays HxWx3 and a CHW array stays CHW (transpose a CHW
    result with `.transpose(1, 2, 0)` before the metrics, which take HxWx3).
    """
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        raise ValueError(f"to_uint8 expects floats in [0, 1], got dtype {x.dtype}")
    x = x.astype(np.float64)
    if np.isnan(x).any():
        raise ValueError("to_uint8: the image contains NaN values (a diverged model?)")
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def mod_crop(img, scale):
    """Crop height and width at the top-left down to multiples of `scale` (a view, no copy), so HR = scale x LR."""
    if not (isinstance(scale, (int, np.integer)) and scale >= 1):
        raise ValueError(f"mod_crop: scale must be a positive integer, got {scale!r}")
    height, width = img.shape[:2]
    return img[: height - height % scale, : width - width % scale]


def rgb_to_y(img):
    """HxWx3 RGB with values in [0, 255] -> HxW float64 luma Y in [16, 235]; not rounded (the protocol's step 4)."""
    img = np.asarray(img)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"rgb_to_y expects an HxWx3 RGB image, got shape {img.shape}")
    return 16.0 + img.astype(np.float64) @ _Y_WEIGHTS


def _planes(a, b, crop, y_channel):
    """Check a pair of images and return them cropped as float64 (C, H, W) planes: one Y plane or three RGB."""
    a, b = np.asarray(a), np.asarray(b)
    for name, img in (("first", a), ("second", b)):
        if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
            raise ValueError(
                f"metrics expect HxWx3 uint8 images; the {name} is shape {img.shape} {img.dtype} "
                "(round model outputs with to_uint8 first)"
            )
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {a.shape} vs {b.shape}")
    if crop < 0 or 2 * crop >= min(a.shape[:2]):
        raise UserError(f"crop {crop} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")  # a tiny image: the user's
    if crop:
        a, b = a[crop:-crop, crop:-crop], b[crop:-crop, crop:-crop]
    if y_channel:
        return rgb_to_y(a)[None], rgb_to_y(b)[None]
    return a.transpose(2, 0, 1).astype(np.float64), b.transpose(2, 0, 1).astype(np.float64)


def psnr(a, b, *, crop=0, y_channel=True):
    """10 log10(255^2 / MSE) in dB, on Y or over all RGB values; identical images give inf."""
    x, y = _planes(a, b, crop, y_channel)
    mse = np.mean((x - y) ** 2)
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(255.0**2 / mse))


def _filter_valid(stack):
    """Gaussian-weighted local means over (..., H, W), valid region only: (..., H-10, W-10).

    The 11x11 window is separable, so filter the columns then the rows: each pass views every 11-pixel
    neighbourhood along one axis (no copy) and contracts it with the taps. No SciPy needed.
    """
    n = len(_TAPS)
    columns = sliding_window_view(stack, n, axis=-2) @ _TAPS  # (..., H-10, W)
    return sliding_window_view(columns, n, axis=-1) @ _TAPS  # (..., H-10, W-10)


def ssim(a, b, *, crop=0, y_channel=True):
    """Mean SSIM (Wang et al. 2004) on Y, or the mean of the three per-channel SSIMs on RGB."""
    x, y = _planes(a, b, crop, y_channel)
    if min(x.shape[1:]) < len(_TAPS):
        raise UserError(f"SSIM needs at least {len(_TAPS)}x{len(_TAPS)} pixels after cropping, got {x.shape[1:]}")
    mu_x, mu_y, xx, yy, xy = _filter_valid(np.stack([x, y, x * x, y * y, x * y]))  # each (C, H-10, W-10)
    var_x, var_y, cov = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + _C1) * (2 * cov + _C2)) / ((mu_x**2 + mu_y**2 + _C1) * (var_x + var_y + _C2))
    # Every channel's map has the same size, so the mean over all equals the mean of the per-channel means.
    return float(ssim_map.mean())


def image_metrics(sr, hr, *, scale):
    """The four figures for one image pair, `scale` pixels cropped from each side: psnr/ssim on Y and RGB."""
    return {
        "psnr_y": psnr(sr, hr, crop=scale),
        "ssim_y": ssim(sr, hr, crop=scale),
        "psnr_rgb": psnr(sr, hr, crop=scale, y_channel=False),
        "ssim_rgb": ssim(sr, hr, crop=scale, y_channel=False),
    }
