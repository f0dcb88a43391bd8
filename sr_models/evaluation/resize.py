"""MATLAB-compatible bicubic resizing, `imresize(image, scale, 'bicubic')`, in torch.

Benchmark LR images are made with MATLAB's imresize, which differs from `F.interpolate` and from PIL:
- cubic kernel with a = -0.5; when shrinking, the kernel is stretched by 1/scale (antialiasing), so each output
  pixel averages over 4/scale input pixels;
- weights are normalised per output pixel; taps beyond the border mirror it (symmetric padding, edge repeated);
- one dimension at a time, the one with the smaller scale factor first (equal factors: height first);
- uint8 input is rounded back to uint8 after each pass. Keeping floats between the passes instead gives about
  10% off-by-one values against the official Set5 files (see docs/evaluation.md).
"""

import math

import numpy as np
import torch


def cubic(x):
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's `cubic`), on a float64 tensor."""
    absx = x.abs()
    absx2, absx3 = absx**2, absx**3
    near = (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1)
    far = (-0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2) * ((absx > 1) & (absx <= 2))
    return near + far


def contributions(in_length, out_length, scale):
    """Which input pixels feed each output pixel, and with what weight (MATLAB's `contributions`).

    Returns `(indices, weights)`, both (out_length, taps): indices int64 into [0, in_length), weights float64
    summing to 1 along each row.
    """
    kernel_width = 4.0
    if scale < 1:
        # Antialiasing: stretch the kernel by 1/scale so it low-passes before decimating.
        kernel = lambda x: scale * cubic(scale * x)  # noqa: E731
        kernel_width /= scale
    else:
        kernel = cubic

    # Output pixel x (1-based, as in MATLAB) sits at u in input coordinates; pixel centres line up.
    x = torch.arange(1, out_length + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    indices = left[:, None] + torch.arange(taps, dtype=torch.float64)  # (out, taps), 1-based
    weights = kernel(u[:, None] - indices)
    weights = weights / weights.sum(dim=1, keepdim=True)

    # Symmetric padding: index k outside 1..n maps into [1..n, n..1] repeated (the edge pixel is repeated).
    indices = indices.long() - 1  # 0-based
    mirror = torch.cat([torch.arange(in_length), torch.arange(in_length - 1, -1, -1)])
    indices = mirror[indices.remainder(2 * in_length)]

    # Drop tap columns that are zero for every output pixel (only saves work; MATLAB does the same).
    used = (weights != 0).any(dim=0)
    return indices[:, used], weights[:, used]


def resize_matrix(in_length, out_length, scale):
    """The (out_length, in_length) float64 matrix of one 1-D pass: row i holds output pixel i's weights.

    Applied as a dense matmul: about 20x faster on CPU than gathering the taps and summing them, and the
    matrix stays small (a 4000-pixel side shrunk x4 is 1000 x 4000 values). Taps that mirror onto the same
    input pixel add up.
    """
    indices, weights = contributions(in_length, out_length, scale)
    rows = torch.arange(out_length)[:, None].expand_as(indices)
    matrix = torch.zeros(out_length, in_length, dtype=torch.float64)
    return matrix.index_put_((rows, indices), weights, accumulate=True)


def imresize(image, *, scale=None, size=None):
    """Resize the last two dimensions of `image` (..., H, W) like MATLAB's `imresize(image, ..., 'bicubic')`.

    Args:
        image: torch tensor (..., H, W), e.g. (B, C, H, W) or (C, H, W), on any device. uint8 input returns
            uint8, rounded after each pass as MATLAB does; float input returns the same float dtype, unclamped.
        scale: one factor for both dimensions; 1/4 shrinks x4, 4 enlarges x4. Output size is ceil(in * scale).
        size: (out_h, out_w) instead of `scale`; the factors are then out_h / H and out_w / W.
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"imresize: expected a torch tensor (..., H, W), got {type(image).__name__}")
    if image.ndim < 2 or image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"imresize: expected a non-empty tensor (..., H, W), got shape {tuple(image.shape)}")
    if image.dtype != torch.uint8 and not image.dtype.is_floating_point:
        raise TypeError(f"imresize: expected uint8 or floating-point input, got {image.dtype}")
    if (scale is None) == (size is None):
        raise ValueError("imresize: pass exactly one of scale= or size=")

    in_h, in_w = image.shape[-2:]
    if scale is not None:
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale < math.inf:
            raise ValueError(f"imresize: scale must be a positive number, got {scale!r}")
        out_h, out_w = math.ceil(in_h * scale), math.ceil(in_w * scale)
        scales = (float(scale), float(scale))
    else:
        valid = isinstance(size, (tuple, list, torch.Size)) and len(size) == 2
        if not valid or not all(isinstance(n, (int, np.integer)) and n > 0 for n in size):
            raise ValueError(f"imresize: size must be (out_h, out_w), two positive integers, got {size!r}")
        out_h, out_w = int(size[0]), int(size[1])
        scales = (out_h / in_h, out_w / in_w)

    is_uint8 = image.dtype == torch.uint8
    # uint8 passes are computed in float64 like MATLAB (float32 could round a borderline .5 the other way),
    # except on MPS, which has no float64. Half precision is computed in float32.
    if is_uint8:
        work_dtype = torch.float32 if image.device.type == "mps" else torch.float64
    else:
        work_dtype = image.dtype if image.dtype in (torch.float32, torch.float64) else torch.float32
    x = image.to(work_dtype)

    # Height is dimension -2, width -1; sorted() is stable, so equal factors resize the height first.
    for dim in sorted((-2, -1), key=lambda d: scales[d]):
        matrix = resize_matrix(x.shape[dim], (out_h, out_w)[dim], scales[dim]).to(x.device, work_dtype)
        x = matrix @ x if dim == -2 else x @ matrix.T  # (..., out_h, W) or (..., H, out_w)
        if is_uint8:
            # MATLAB rounds half away from zero and saturates; after the clamp every value is >= 0.
            x = torch.floor(x.clamp(0, 255) + 0.5)
    return x.to(image.dtype)


def _resize_hwc(image, scale):
    """numpy HxWx3 uint8 -> numpy uint8 through `imresize` on a (3, H, W) tensor."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3:
        raise ValueError(f"expected an HxWxC uint8 image, got {image.dtype} with shape {image.shape}")
    chw = torch.from_numpy(image.transpose(2, 0, 1).copy())  # a copy: the input may be read-only
    return imresize(chw, scale=scale).permute(1, 2, 0).contiguous().numpy()


def downscale_image(hr, scale):
    """HR uint8 HxWx3 -> LR uint8, shrunk by the integer `scale` like MATLAB `imresize(hr, 1/scale, 'bicubic')`.

    Mod-crop `hr` to a multiple of `scale` first to get HR = scale x LR exactly (otherwise LR is ceil(H/scale)).
    """
    return _resize_hwc(hr, 1 / scale)


def upscale_bicubic(lr, scale):
    """LR uint8 HxWx3 -> uint8 enlarged `scale` times with MATLAB bicubic (the usual SR baseline)."""
    return _resize_hwc(lr, scale)
