"""Blur kernels of Real-ESRGAN (BasicSR's degradations.py), their random draw, and the blur itself.

Every builder works in float64 and returns a float32 (size, size) tensor that sums to 1; size is odd. The
Gaussian family shares one quadratic form: q(x, y) = [x y] S^-1 [x y]^T, with S = R diag(sx^2, sy^2) R^T and R
the rotation by `rotation` (x is the column offset, y the row offset, as in BasicSR's mesh grid).
"""

import math

import numpy as np
import torch
import torch.nn.functional as F


def _quadratic_form(size, sigma_x, sigma_y, rotation):
    """q(x, y) on the (size, size) grid centred on the middle pixel, float64."""
    assert size % 2 == 1, f"kernel size {size} must be odd"
    half = size // 2
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    cos, sin = math.cos(rotation), math.sin(rotation)
    rotate = torch.tensor([[cos, -sin], [sin, cos]], dtype=torch.float64)
    covariance = rotate @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rotate.T
    inverse = torch.linalg.inv(covariance)
    return inverse[0, 0] * x * x + (inverse[0, 1] + inverse[1, 0]) * x * y + inverse[1, 1] * y * y


def _normalised(kernel):
    return (kernel / kernel.sum()).to(torch.float32)


def gaussian_kernel(*, size, sigma_x, sigma_y, rotation=0.0):
    """Anisotropic Gaussian (isotropic when sigma_x == sigma_y): exp(-q / 2)."""
    return _normalised(torch.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, rotation)))


def generalized_gaussian_kernel(*, size, sigma_x, sigma_y, rotation=0.0, beta):
    """Generalized Gaussian: exp(-q^beta / 2); beta < 1 a sharper peak and heavier tails, beta > 1 flatter."""
    return _normalised(torch.exp(-0.5 * _quadratic_form(size, sigma_x, sigma_y, rotation) ** beta))


def plateau_kernel(*, size, sigma_x, sigma_y, rotation=0.0, beta):
    """Plateau: 1 / (1 + q^beta), a flat top and a slow fall."""
    return _normalised(1 / (_quadratic_form(size, sigma_x, sigma_y, rotation) ** beta + 1))


def sinc_kernel(*, size, omega):
    """The 2-D sinc of an ideal circular low-pass filter of cutoff `omega` (radians per pixel):
    omega J1(omega r) / (2 pi r), whose limit at r = 0 is omega^2 / (4 pi). Blurs with ringing."""
    assert size % 2 == 1, f"kernel size {size} must be odd"
    half = size // 2
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    r = torch.sqrt(x * x + y * y)
    r_safe = torch.where(r == 0, torch.ones_like(r), r)  # J1(0)/0 is 0/0: the centre is set to its limit below
    kernel = omega * torch.special.bessel_j1(omega * r_safe) / (2 * math.pi * r_safe)
    kernel = torch.where(r == 0, torch.full_like(r, omega**2 / (4 * math.pi)), kernel)
    return _normalised(kernel)


def padded(kernel, size):
    """`kernel` zero-padded to (size, size), centred: every kernel of a batch then has one shape."""
    pad = (size - kernel.shape[-1]) // 2
    return F.pad(kernel, (pad, pad, pad, pad))


# ---- the random draw (Real-ESRGAN: realesrgan_dataset.py, BasicSR's random_mixed_kernels) -------------------


def kernel_sizes(max_size):
    return list(range(7, max_size + 1, 2))


def _beta(rng, beta_range):
    low, high = beta_range
    if not low <= 1 <= high:  # a range on one side of 1 (only flat, or only peaked kernels): uniform over it
        return float(rng.uniform(low, high))
    # half the draws below 1, half above, as BasicSR does: a range such as [0.5, 4] is not dominated by > 1
    return float(rng.uniform(low, 1) if rng.random() < 0.5 else rng.uniform(1, high))


def normalized(probs):
    """`probs` scaled to sum to 1 exactly: options allow a sum within 1e-6 of 1 (0.3333333 x 3), numpy's choice
    only within about 1e-8."""
    probs = np.asarray(probs, dtype=np.float64)
    return probs / probs.sum()


def random_kernel(rng, *, kinds, probs, max_size, sinc_prob, sigma_range, betag_range, betap_range):
    """One blur kernel as Real-ESRGAN draws it: a size from {7, ..., max_size}; a sinc with chance `sinc_prob`
    (cutoff in [pi/3, pi] below size 13, else [pi/5, pi]), else a kind of `kinds` by `probs` with its parameters.
    Returns the kernel padded to (max_size, max_size) and the drawn parameters."""
    size = int(rng.choice(kernel_sizes(max_size)))
    if rng.random() < sinc_prob:
        omega = float(rng.uniform(math.pi / 3, math.pi) if size < 13 else rng.uniform(math.pi / 5, math.pi))
        return padded(sinc_kernel(size=size, omega=omega), max_size), {"kind": "sinc", "size": size, "omega": omega}
    kind = kinds[int(rng.choice(len(kinds), p=normalized(probs)))]
    sigma_x = float(rng.uniform(*sigma_range))
    if kind.split("_")[-1] == "iso":
        sigma_y, rotation = sigma_x, 0.0
    else:
        sigma_y, rotation = float(rng.uniform(*sigma_range)), float(rng.uniform(-math.pi, math.pi))
    params = {"kind": kind, "size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "rotation": rotation}
    shape = {"size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "rotation": rotation}
    if kind.startswith("generalized"):
        params["beta"] = _beta(rng, betag_range)
        kernel = generalized_gaussian_kernel(**shape, beta=params["beta"])
    elif kind.startswith("plateau"):
        params["beta"] = _beta(rng, betap_range)
        kernel = plateau_kernel(**shape, beta=params["beta"])
    else:
        kernel = gaussian_kernel(**shape)
    return padded(kernel, max_size), params


def random_sinc(rng, *, max_size):
    """The final sinc filter: a size from {7, ..., max_size}, cutoff in [pi/3, pi]."""
    size = int(rng.choice(kernel_sizes(max_size)))
    omega = float(rng.uniform(math.pi / 3, math.pi))
    return padded(sinc_kernel(size=size, omega=omega), max_size), {"size": size, "omega": omega}


# ---- the blur --------------------------------------------------------------------------------------------------


def _trimmed(kernel):
    """`kernel` without its rings of zeros (the padding of `padded`): they change no sum, and a 7x7 kernel padded
    to 21x21 would pad the image by 10 pixels instead of 3 and lengthen its transform."""
    while kernel.shape[-1] > 1 and not (
        kernel[0].any() or kernel[-1].any() or kernel[:, 0].any() or kernel[:, -1].any()
    ):
        kernel = kernel[1:-1, 1:-1]
    return kernel


def _fft_size(n):
    """The smallest 2^a 3^b 5^c >= n: FFTs of such lengths are fast, a prime length (128 + 2 x 10 = 148 = 4 x 37)
    is several times slower."""
    while True:
        rest = n
        for prime in (2, 3, 5):
            while rest % prime == 0:
                rest //= prime
        if rest == 1:
            return n
        n += 1


def _correlate_fft(padded_img, kernel, out_size):
    """The 'valid' correlation of `padded_img` (B, C, H + k - 1, W + k - 1) with `kernel` (k, k) by FFT. The
    transform is at least as long as the padded image, so the circular correlation wraps only where no output is
    kept: out[i] = sum_j x[i + j] K[j] with i + j < H + k - 1."""
    k = kernel.shape[-1]
    lengths = tuple(_fft_size(n) for n in padded_img.shape[-2:])
    image = torch.fft.rfft2(padded_img, s=lengths)
    # correlation is convolution with the flipped kernel
    flipped = torch.fft.rfft2(kernel.flip(-2, -1).to(padded_img.device, padded_img.dtype), s=lengths)
    out = torch.fft.irfft2(image * flipped, s=lengths)
    return out[..., k - 1 : k - 1 + out_size[0], k - 1 : k - 1 + out_size[1]].contiguous()


def blur(img, kernel):
    """`img` (B, C, H, W) filtered by `kernel` (k, k), the same kernel on every channel, padded by reflection
    (torch's 'reflect': the edge pixel is not repeated, scipy's 'mirror'), as Real-ESRGAN's filter2D.
    Reflection needs the pad below the image size; a smaller image is padded by edge replication instead.
    The kernels here are point-symmetric, so correlation and convolution agree.

    Multiplied in the frequency domain rather than convolved directly: the cost hardly grows with the kernel,
    where a depthwise convolution's grows with its k^2 taps and depends on which of oneDNN's paths the CPU and
    the shape get (docs/degradations.md, Speed)."""
    assert kernel.ndim == 2 and kernel.shape[0] == kernel.shape[1] and kernel.shape[0] % 2 == 1, (
        f"a blur kernel is square with an odd side (it has a centre), got {tuple(kernel.shape)}"
    )
    kernel = _trimmed(kernel)
    pad = kernel.shape[-1] // 2
    mode = "reflect" if pad < min(img.shape[-2:]) else "replicate"
    return _correlate_fft(F.pad(img, (pad, pad, pad, pad), mode=mode), kernel, img.shape[-2:])
