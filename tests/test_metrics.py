"""PSNR/SSIM against scikit-image (the protocol's test oracle), plus hand-computed values and edge cases."""

import math

import numpy as np
import pytest
from conftest import SHARED, needs_shared
from PIL import Image, ImageFilter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sr_models.evaluation.metrics import image_metrics, mod_crop, psnr, rgb_to_y, ssim, to_uint8
from sr_models.images import load_rgb


def reference_psnr(a, b, *, crop, y_channel):
    a, b = _crop(a, crop), _crop(b, crop)
    if y_channel:
        return peak_signal_noise_ratio(rgb_to_y(a), rgb_to_y(b), data_range=255)
    return peak_signal_noise_ratio(a.astype(np.float64), b.astype(np.float64), data_range=255)


def reference_ssim(a, b, *, crop, y_channel):
    # win_size=11 with sigma 1.5: skimage filters with an 11-tap Gaussian and averages the map after cutting
    # (11 - 1) // 2 = 5 pixels per side, which is MATLAB's 'valid' region.
    options = dict(gaussian_weights=True, sigma=1.5, win_size=11, use_sample_covariance=False, data_range=255)
    a, b = _crop(a, crop), _crop(b, crop)
    if y_channel:
        return structural_similarity(rgb_to_y(a), rgb_to_y(b), **options)
    # channel_axis: skimage averages the per-channel SSIMs, as BasicSR does.
    return structural_similarity(a.astype(np.float64), b.astype(np.float64), channel_axis=2, **options)


def _crop(img, crop):
    return img[crop:-crop, crop:-crop] if crop else img


def degraded_pair(rng, shape):
    """A random image and a noisy copy: PSNR around 30 dB, SSIM well away from 0 and 1."""
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    noise = rng.normal(0, 8, shape)
    return a, np.clip(np.rint(a + noise), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("y_channel", [True, False])
@pytest.mark.parametrize("crop", [0, 4])
@pytest.mark.parametrize("shape", [(64, 80, 3), (37, 29, 3)])
def test_random_images_match_skimage(shape, crop, y_channel):
    a, b = degraded_pair(np.random.default_rng(sum(shape) + crop), shape)
    assert psnr(a, b, crop=crop, y_channel=y_channel) == pytest.approx(
        reference_psnr(a, b, crop=crop, y_channel=y_channel), abs=1e-9
    )
    assert ssim(a, b, crop=crop, y_channel=y_channel) == pytest.approx(
        reference_ssim(a, b, crop=crop, y_channel=y_channel), abs=1e-6
    )


@needs_shared
@pytest.mark.parametrize("degrade", ["noise", "blur"])
@pytest.mark.parametrize("stem", ["butterfly", "woman"])
def test_set5_images_match_skimage(stem, degrade):
    hr = load_rgb(SHARED / "Set5" / "HR" / f"{stem}.png")
    if degrade == "noise":
        noise = np.random.default_rng(0).normal(0, 6, hr.shape)
        sr = np.clip(np.rint(hr + noise), 0, 255).astype(np.uint8)
    else:
        sr = np.asarray(Image.fromarray(hr).filter(ImageFilter.GaussianBlur(1.2)))
    for y_channel in (True, False):
        ours = psnr(sr, hr, crop=4, y_channel=y_channel)
        assert 20 < ours < 45  # a real degradation, neither identical nor unrelated
        assert ours == pytest.approx(reference_psnr(sr, hr, crop=4, y_channel=y_channel), abs=1e-9)
        ours = ssim(sr, hr, crop=4, y_channel=y_channel)
        assert 0.5 < ours < 0.999
        assert ours == pytest.approx(reference_ssim(sr, hr, crop=4, y_channel=y_channel), abs=1e-6)


def test_rgb_to_y_hand_computed():
    pixels = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [10, 20, 30]]], dtype=np.uint8)
    y = rgb_to_y(pixels)
    assert y.dtype == np.float64 and y.shape == (1, 4)
    # 16 + (65.481*10 + 128.553*20 + 24.966*30) / 255 = 16 + 3974.85 / 255, deliberately not rounded
    np.testing.assert_allclose(y[0], [16.0, 235.0, 16 + 65.481, 16 + 3974.85 / 255], rtol=0, atol=1e-12)


def test_psnr_hand_computed_and_identical():
    a = np.full((16, 16, 3), 100, dtype=np.uint8)
    b = a + 1
    assert psnr(a, b, y_channel=False) == pytest.approx(20 * math.log10(255))  # MSE 1
    # every channel up by one moves Y by (65.481 + 128.553 + 24.966) / 255 = 219 / 255
    assert psnr(a, b) == pytest.approx(20 * math.log10(255 / (219 / 255)))
    assert psnr(a, a) == math.inf
    assert ssim(a, a) == pytest.approx(1.0)


def test_crop_ignores_the_border():
    a = np.full((32, 32, 3), 50, dtype=np.uint8)
    b = a.copy()
    b[:4] = 255  # damage only the 4-pixel border band
    assert psnr(a, b, crop=4) == math.inf
    assert ssim(a, b, crop=4) == pytest.approx(1.0)
    assert psnr(a, b, crop=3) < 30


def test_image_metrics_uses_scale_as_crop():
    a, b = degraded_pair(np.random.default_rng(1), (48, 40, 3))
    figures = image_metrics(a, b, scale=3)
    assert figures == {
        "psnr_y": psnr(a, b, crop=3),
        "ssim_y": ssim(a, b, crop=3),
        "psnr_rgb": psnr(a, b, crop=3, y_channel=False),
        "ssim_rgb": ssim(a, b, crop=3, y_channel=False),
    }
    assert all(type(v) is float for v in figures.values())


def test_to_uint8_rounds_half_to_even_and_clamps():
    x = np.array([-0.3, 0.0, 0.5 / 255, 0.5 / 255 + 1e-9, 1.5 / 255, 2.5 / 255, 254.5 / 255, 1.0, 1.7, np.inf])
    np.testing.assert_array_equal(to_uint8(x), [0, 0, 0, 1, 2, 2, 254, 255, 255, 255])
    assert to_uint8(x).dtype == np.uint8


def test_to_uint8_keeps_the_layout():
    chw = np.random.default_rng(2).random((3, 5, 7), dtype=np.float32)
    out = to_uint8(chw)
    assert out.shape == (3, 5, 7)
    np.testing.assert_array_equal(out, np.rint(chw.astype(np.float64) * 255))


def test_to_uint8_rejects_integers_and_nan():
    with pytest.raises(ValueError, match="uint8"):
        to_uint8(np.zeros((2, 2, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match="NaN"):
        to_uint8(np.array([0.2, np.nan]))


def test_mod_crop_keeps_the_top_left():
    img = np.arange(13 * 10 * 3, dtype=np.uint8).reshape(13, 10, 3)
    cropped = mod_crop(img, 4)
    assert cropped.shape == (12, 8, 3)
    np.testing.assert_array_equal(cropped, img[:12, :8])
    assert mod_crop(img, 1).shape == img.shape
    assert mod_crop(img[:, :, 0], 3).shape == (12, 9)
    with pytest.raises(ValueError, match="scale"):
        mod_crop(img, 0)


def test_size_mismatch_names_both_shapes():
    a = np.zeros((20, 24, 3), dtype=np.uint8)
    b = np.zeros((24, 20, 3), dtype=np.uint8)
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match=r"\(20, 24, 3\) vs \(24, 20, 3\)"):
            metric(a, b)


def test_bad_inputs_are_refused():
    a = np.zeros((20, 20, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="uint8"):
        psnr(a.astype(np.float32) / 255, a)  # a [0, 1] float model output not yet rounded
    with pytest.raises(ValueError, match="leaves nothing"):
        psnr(a, a, crop=10)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a, a, crop=5)  # 10x10 left: smaller than the window
