"""Gaussian and Poisson noise as Real-ESRGAN adds it (BasicSR's generate_*_noise_pt), drawn from an explicit
generator on the CPU and moved to the image's device, so a seed gives the same noise on every device.

Both return the noise (same shape as the image), not the noisy image: the caller adds it and clips.
"""

import math

import torch

LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights, as Real-ESRGAN uses


def gaussian_noise(img, *, sigma, gray, generator):
    """Noise of standard deviation sigma / 255 (`sigma` in 0..255 units) for `img` (B, C, H, W); `gray`: one
    noise plane shared by all channels (luminance noise), else independent per channel (colour noise)."""
    b, c, h, w = img.shape
    noise = torch.randn((b, 1 if gray else c, h, w), generator=generator, dtype=torch.float32) * (sigma / 255)
    return noise.expand(b, c, h, w).to(img.device, img.dtype)


def _levels(img):
    """Real-ESRGAN's photon count per unit of intensity: 2^ceil(log2(distinct 8-bit values)), per image of `img`
    (B, C, H, W) on 8-bit levels. Counted in a 256-bin histogram, several times faster than torch.unique's sort."""
    counts = [int((torch.bincount(one.flatten(), minlength=256) > 0).sum()) for one in (img * 255).round().long()]
    return [2 ** math.ceil(math.log2(count)) for count in counts]


def poisson_noise(img, *, scale, gray, generator):
    """Shot noise: the image on 8-bit levels, v = _levels, noise = (poisson(img v) / v - img) * scale, so its
    variance is img / v * scale^2. `gray`: drawn on the luma and shared by all channels."""
    b, c, h, w = img.shape
    source = img.detach().to("cpu", torch.float32)
    if gray:
        source = (source * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    source = torch.clamp((source * 255).round(), 0, 255) / 255  # on 8-bit levels, for counting the values
    vals = torch.tensor(_levels(source), dtype=torch.float32).view(b, 1, 1, 1)
    noise = (torch.poisson(source * vals, generator=generator) / vals - source) * scale
    return noise.expand(b, c, h, w).to(img.device, img.dtype)
