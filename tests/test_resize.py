"""MATLAB-compatible bicubic: against the official Set5 LR files and an independent pure-numpy reference."""

import math

import numpy as np
import pytest
import torch
from conftest import SHARED, needs_shared
from PIL import Image

from sr_models.evaluation.resize import contributions, downscale_image, imresize, upscale_bicubic

STEMS = ["baby", "bird", "butterfly", "head", "woman"]


# ---------------------------------------------------------------------------------------------------------------
# Independent reference: MATLAB's algorithm written as a plain loop over output pixels (no shared code).


def _cubic(x):
    x = abs(x)
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x <= 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def _reflect(k, n):
    """Symmetric padding, edge repeated: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ..., as often as needed."""
    while not 0 <= k < n:
        k = -k - 1 if k < 0 else 2 * n - 1 - k
    return k


def reference_resize_1d(signal, scale):
    """Resize a 1-D float64 array like MATLAB imresize bicubic along one dimension (output ceil(n * scale))."""
    n = len(signal)
    width = 4 / scale if scale < 1 else 4.0
    out = np.empty(math.ceil(n * scale))
    for i in range(len(out)):
        centre = (i + 1) / scale + 0.5 * (1 - 1 / scale)  # 1-based input coordinate of output pixel i+1
        total = weight_sum = 0.0
        for j in range(math.floor(centre - width / 2), math.floor(centre - width / 2) + math.ceil(width) + 2):
            w = scale * _cubic(scale * (centre - j)) if scale < 1 else _cubic(centre - j)
            total += w * signal[_reflect(j - 1, n)]
            weight_sum += w
        out[i] = total / weight_sum
    return out


def reference_resize_2d_uint8(image, scales, order):
    """2-D uint8 reference: one axis at a time in `order` (0 = height, 1 = width), rounding after each pass."""
    x = image.astype(np.float64)
    for axis in order:
        x = np.apply_along_axis(reference_resize_1d, axis, x, scales[axis])
        x = np.floor(np.clip(x, 0, 255) + 0.5)  # MATLAB: round half away from zero, saturate
    return x.astype(np.uint8)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2, 3, 4])
@pytest.mark.parametrize("length", [9, 37])
def test_matches_numpy_reference_1d(scale, length):
    signal = np.random.default_rng(length).random(length)
    # A (length, 1) column: the width pass of a single pixel is the identity (all taps mirror onto it).
    ours = imresize(torch.from_numpy(signal)[:, None], scale=scale)[:, 0].numpy()
    np.testing.assert_allclose(ours, reference_resize_1d(signal, scale), rtol=0, atol=1e-12)


def test_uint8_rounds_after_each_pass_in_matlab_order():
    image = np.random.default_rng(0).integers(0, 256, (13, 19), dtype=np.uint8)
    ours = imresize(torch.from_numpy(image), scale=1 / 3).numpy()
    # Equal factors: height (MATLAB's dimension 1) first, then width.
    np.testing.assert_array_equal(ours, reference_resize_2d_uint8(image, (1 / 3, 1 / 3), order=(0, 1)))
    # The order is observable because of the intermediate rounding.
    assert (ours != reference_resize_2d_uint8(image, (1 / 3, 1 / 3), order=(1, 0))).any()


def test_smaller_factor_goes_first():
    image = np.random.default_rng(1).integers(0, 256, (24, 24), dtype=np.uint8)
    ours = imresize(torch.from_numpy(image), size=(12, 6)).numpy()  # height x0.5, width x0.25: width first
    np.testing.assert_array_equal(ours, reference_resize_2d_uint8(image, (0.5, 0.25), order=(1, 0)))
    assert (ours != reference_resize_2d_uint8(image, (0.5, 0.25), order=(0, 1))).any()


def test_contribution_weights_are_normalised_and_in_range():
    for scale in (0.25, 1 / 3, 2.5):
        indices, weights = contributions(7, math.ceil(7 * scale), scale)
        assert indices.shape == weights.shape
        assert indices.min() >= 0 and indices.max() < 7
        torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(weights), dtype=torch.float64))


# ---------------------------------------------------------------------------------------------------------------
# The official Set5 LR files (MATLAB imresize of the mod-cropped HR).


def _load(path):
    return np.array(Image.open(path).convert("RGB"))


@needs_shared
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_lr_matches_official_files(scale):
    values = off_uint8 = off_float = 0
    for stem in STEMS:
        hr = _load(SHARED / "Set5" / "HR" / f"{stem}.png")
        hr = hr[: hr.shape[0] // scale * scale, : hr.shape[1] // scale * scale]  # mod-crop
        official = _load(SHARED / "Set5" / "LR_bicubic" / f"X{scale}" / f"{stem}x{scale}.png")

        lr = downscale_image(hr, scale)
        assert lr.shape == official.shape and lr.dtype == np.uint8
        difference = np.abs(lr.astype(int) - official)
        assert difference.max() <= 1, f"{stem} x{scale}: off by {difference.max()} grey levels"

        # The same resize kept in float between the passes, rounded only at the end.
        chw = torch.from_numpy(hr).permute(2, 0, 1).double()
        floats = imresize(chw, scale=1 / scale).clamp(0, 255).round().byte().permute(1, 2, 0).numpy()

        values += official.size
        off_uint8 += int((difference > 0).sum())
        off_float += int((floats != official).sum())

    uint8_fraction, float_fraction = off_uint8 / values, off_float / values
    print(f"\nSet5 x{scale}: uint8 path differs in {uint8_fraction:.4%} of values, float path {float_fraction:.4%}")
    assert uint8_fraction <= 0.001
    # The protocol's point: rounding after each pass is what MATLAB does; floats between passes are ~10% off.
    assert float_fraction > 0.05
    assert uint8_fraction < float_fraction / 50


# ---------------------------------------------------------------------------------------------------------------
# Properties.


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2, 3])
def test_constant_image_stays_constant(scale):
    flat = torch.full((3, 17, 23), 0.3, dtype=torch.float64)
    out = imresize(flat, scale=scale)
    torch.testing.assert_close(out, torch.full_like(out, 0.3), rtol=0, atol=1e-12)
    flat8 = torch.full((3, 17, 23), 201, dtype=torch.uint8)
    assert (imresize(flat8, scale=scale) == 201).all()


def test_batch_equals_per_image():
    generator = torch.Generator().manual_seed(0)
    batch = torch.randint(0, 256, (2, 3, 20, 28), dtype=torch.uint8, generator=generator)
    out = imresize(batch, scale=1 / 4)
    for b in range(2):
        for c in range(3):
            assert torch.equal(out[b, c], imresize(batch[b, c], scale=1 / 4))
    floats = batch.double() / 255
    out = imresize(floats, scale=3)
    torch.testing.assert_close(out[1, 2], imresize(floats[1, 2], scale=3), rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("scale", "expected"), [(1 / 4, (5, 6)), (1 / 3, (6, 8)), (1 / 2, (9, 12)), (3, (51, 69)), (2.5, (43, 58))]
)
def test_output_shape_is_ceil(scale, expected):
    out = imresize(torch.zeros(2, 3, 17, 23), scale=scale)
    assert out.shape == (2, 3, *expected) and out.dtype == torch.float32


def test_size_form():
    image = torch.rand(3, 32, 48, dtype=torch.float64)
    # When out = in * scale exactly, size= and scale= are the same resize.
    torch.testing.assert_close(imresize(image, size=(8, 12)), imresize(image, scale=1 / 4), rtol=0, atol=1e-12)
    # Different factors per dimension: each dimension matches the 1-D reference.
    column = image[0, :, :1]
    ours = imresize(column, size=(64, 1))[:, 0].numpy()
    np.testing.assert_allclose(ours, reference_resize_1d(column[:, 0].numpy(), 2), atol=1e-12)
    assert imresize(image, size=(10, 70)).shape == (3, 10, 70)


def test_float_and_uint8_paths_agree_within_rounding():
    # Values kept away from 0 and 255 so the intermediate uint8 pass never saturates (bicubic overshoots).
    generator = torch.Generator().manual_seed(1)
    image = torch.randint(40, 216, (3, 40, 36), dtype=torch.uint8, generator=generator)
    for scale in (1 / 4, 1 / 3, 2):
        as_uint8 = imresize(image, scale=scale).double()
        as_float = imresize(image.double(), scale=scale)
        # The first rounding (<= 0.5) passes through the second pass's weights, then the final rounding (<= 0.5).
        _, weights = contributions(36, math.ceil(36 * scale), scale)
        bound = 0.5 * weights.abs().sum(dim=1).max().item() + 0.5
        assert (as_uint8 - as_float).abs().max() <= bound + 1e-9
        assert (as_uint8 - as_float).abs().mean() < 0.5


def test_float_dtypes_and_no_clamping():
    step = torch.zeros(1, 8, 8)
    step[:, :, 4:] = 1.0
    out = imresize(step, scale=2)
    assert out.dtype == torch.float32
    assert out.min() < 0 and out.max() > 1  # bicubic overshoots at an edge; float output is not clamped
    torch.testing.assert_close(out, imresize(step.double(), scale=2).float(), rtol=0, atol=1e-6)
    assert imresize(step.half(), scale=0.5).dtype == torch.float16


def test_numpy_wrappers():
    hr = np.random.default_rng(2).integers(0, 256, (24, 36, 3), dtype=np.uint8)
    lr = downscale_image(hr, 4)
    assert lr.shape == (6, 9, 3) and lr.dtype == np.uint8
    expected = imresize(torch.from_numpy(hr).permute(2, 0, 1).contiguous(), scale=1 / 4).permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(lr, expected)
    up = upscale_bicubic(lr, 4)
    assert up.shape == (24, 36, 3) and up.dtype == np.uint8
    with pytest.raises(ValueError, match="HxWxC uint8"):
        downscale_image(hr.astype(np.float32), 4)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"scale": 0.5, "size": (4, 4)}, ValueError, "exactly one of scale= or size="),
        ({}, ValueError, "exactly one of scale= or size="),
        ({"scale": 0}, ValueError, "scale must be a positive number"),
        ({"scale": "2"}, ValueError, "scale must be a positive number"),
        ({"size": (4,)}, ValueError, r"size must be \(out_h, out_w\)"),
        ({"size": (4, 0)}, ValueError, r"size must be \(out_h, out_w\)"),
        ({"size": 4}, ValueError, r"size must be \(out_h, out_w\)"),
    ],
)
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        imresize(torch.zeros(3, 8, 8), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"expected a non-empty tensor \(\.\.\., H, W\), got shape \(8,\)"):
        imresize(torch.zeros(8), scale=2)
    with pytest.raises(ValueError, match="non-empty"):
        imresize(torch.zeros(3, 0, 8), scale=2)
    with pytest.raises(TypeError, match="expected a torch tensor"):
        imresize(np.zeros((8, 8)), scale=2)
    with pytest.raises(TypeError, match="uint8 or floating-point"):
        imresize(torch.zeros(8, 8, dtype=torch.int32), scale=2)
