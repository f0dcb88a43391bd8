"""A real baseline-JPEG round trip in torch, batched, as libjpeg does it with its defaults (what Pillow's
`save(format="JPEG", quality=q, subsampling=2)` then `open` gives), not a differentiable approximation.

Encode: 8-bit RGB -> YCbCr (JFIF) -> 4:2:0 chroma (2x2 averages) -> 8x8 blocks -> orthonormal DCT-II ->
quantisation by the Annex K tables scaled by quality (libjpeg's jpeg_quality_scaling) -> rounding.
Decode: dequantisation -> inverse DCT -> chroma upsampled as libjpeg's "fancy" upsampling (the triangle filter:
weights 3/4, 1/4 each way, which is bilinear x2 with half-pixel centres) -> RGB, on 8-bit levels.
Where libjpeg computes in fixed point this computes in float (the DCT in float64) and rounds at the same steps
and the same way (samples are integers between stages, quotients round half away from zero). A coefficient
that falls on a rounding boundary can still round the other way, so the output is close to Pillow's, not
equal: 46.5-60 dB PSNR on photo crops, 41-56 dB on Set5 (tests/test_degrade.py).
"""

import math

import torch
import torch.nn.functional as F

# ITU-T T.81 Annex K, tables K.1 (luminance) and K.2 (chrominance), in natural (row-major) order
LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8,) * 4,
)

# JFIF's RGB -> YCbCr (Cb and Cr offset by 128) and its inverse
TO_YCC = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))
MCU = 16  # 4:2:0: one 16x16 block of luma per 8x8 block of each chroma plane


def quality_scaled(table, quality):
    """`table` scaled for `quality` exactly as libjpeg's jpeg_quality_scaling + jpeg_add_quant_table with
    force_baseline (what Pillow asks for): integer arithmetic, entries clamped to 1..255."""
    quality = min(max(int(quality), 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return ((torch.tensor(table, dtype=torch.int64) * scale + 50) // 100).clamp(1, 255)


def _dct_matrix():
    """C (8, 8) with C[u, x] = c(u) cos((2x + 1) u pi / 16): the orthonormal DCT-II, so a block's coefficients are
    C X C^T, which is JPEG's FDCT, and C^T F C its inverse."""
    u = torch.arange(8, dtype=torch.float64).view(8, 1)
    x = torch.arange(8, dtype=torch.float64).view(1, 8)
    matrix = torch.cos((2 * x + 1) * u * math.pi / 16) * math.sqrt(2 / 8)
    matrix[0] = math.sqrt(1 / 8)
    return matrix


DCT = _dct_matrix()


def _round_half_away(x):
    """libjpeg's rounding of a quotient (it adds half the divisor to the magnitude): halves away from zero, where
    torch.round takes halves to even. Flat blocks make exact halves common (a DC of 8 (v - 128) over an even step)."""
    return torch.sign(x) * torch.floor(x.abs() + (0.5 + 1e-6))  # the 1e-6: a half in exact arithmetic stays one


def _subsampled(chroma):
    """2x2 averages of `chroma` (B, 2, H, W) on 8-bit levels as libjpeg's h2v2_downsample: (sum + bias) >> 2 with
    the bias 1, 2, 1, 2, ... along each row, so the halves round down and up in turn."""
    sums = F.avg_pool2d(chroma, 2) * 4
    bias = torch.ones(sums.shape[-1], device=chroma.device)
    bias[1::2] = 2
    return torch.floor((sums + bias) / 4)


def _round_trip(plane, tables):
    """Quantise and dequantise the 8x8 blocks of `plane` (B, H, W), samples minus 128, with `tables` (B, 8, 8):
    the decoded samples, on 8-bit levels."""
    b, h, w = plane.shape
    plane = plane.to(torch.float64)  # float64: libjpeg's DC of a flat block is exact, and so a half must be here
    dct = DCT.to(plane.device, torch.float64)
    blocks = plane.reshape(b, h // 8, 8, w // 8, 8).transpose(2, 3)  # (B, H/8, W/8, 8, 8)
    coefficients = dct @ blocks @ dct.T
    steps = tables.to(plane.device, torch.float64).view(b, 1, 1, 8, 8)
    coefficients = _round_half_away(coefficients / steps) * steps
    decoded = (dct.T @ coefficients @ dct).transpose(2, 3).reshape(b, h, w)
    return torch.clamp(torch.round(decoded + 128), 0, 255).to(torch.float32)


def jpeg(img, quality):
    """`img` (B, 3, H, W) in 0..1 through a JPEG encode and decode at `quality` (an int, or one per image).
    Returns (B, 3, H, W) float32 in 0..1, on 8-bit levels, on img's device."""
    b, _, h, w = img.shape
    qualities = [int(quality)] * b if isinstance(quality, (int, float)) else [int(q) for q in quality]
    assert len(qualities) == b, f"{len(qualities)} qualities for a batch of {b}"
    luma_tables = torch.stack([quality_scaled(LUMA_TABLE, q) for q in qualities])
    chroma_tables = torch.stack([quality_scaled(CHROMA_TABLE, q) for q in qualities])

    rgb = torch.round(img.to(torch.float32).clamp(0, 1) * 255)  # the encoder reads 8-bit samples
    # pad to whole MCUs by repeating the last row and column (libjpeg repeats edge samples, then crops on decode)
    rgb = F.pad(rgb, (0, -w % MCU, 0, -h % MCU), mode="replicate")
    to_ycc = torch.tensor(TO_YCC, device=img.device)
    ycc = torch.einsum("oc,bchw->bohw", to_ycc, rgb)
    ycc[:, 1:] += 128
    ycc = torch.clamp(torch.round(ycc), 0, 255)
    chroma = _subsampled(ycc[:, 1:])  # (B, 2, H/2, W/2): 4:2:0

    luma = _round_trip(ycc[:, 0] - 128, luma_tables)
    chroma = torch.stack([_round_trip(chroma[:, c] - 128, chroma_tables) for c in range(2)], dim=1)
    chroma = torch.round(F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False))

    ycc = torch.cat([luma.unsqueeze(1), chroma - 128], dim=1)
    rgb = torch.einsum("oc,bchw->bohw", torch.tensor(TO_RGB, device=img.device), ycc)
    return torch.clamp(torch.round(rgb), 0, 255)[:, :, :h, :w] / 255
