"""train/degrade: each operator against an independent reference (scipy, numpy formulas, Pillow's libjpeg), the
pipeline's determinism per (seed, index), and the options' one-line errors."""

import io
import math

import numpy as np
import pytest
import scipy.ndimage
import scipy.special
import scipy.stats
import torch
from PIL import Image

from sr_models.errors import UserError
from tests.conftest import SHARED
from train.degrade import DegradeOptionError, DegradeOptions, Degrader, summarize
from train.degrade.jpeg import CHROMA_TABLE, LUMA_TABLE, jpeg, quality_scaled
from train.degrade.kernels import (
    blur,
    gaussian_kernel,
    generalized_gaussian_kernel,
    padded,
    plateau_kernel,
    random_kernel,
    sinc_kernel,
)
from train.degrade.noise import _levels, gaussian_noise, poisson_noise
from train.degrade.resize import resize

# ---- kernels ---------------------------------------------------------------------------------------------------


def grid(size):
    """(x, y) offsets from the centre: x the column, y the row."""
    half = size // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1].astype(np.float64)
    return x, y


def covariance(sigma_x, sigma_y, rotation):
    rotate = np.array([[math.cos(rotation), -math.sin(rotation)], [math.sin(rotation), math.cos(rotation)]])
    return rotate @ np.diag([sigma_x**2, sigma_y**2]) @ rotate.T


def quadratic(size, sigma_x, sigma_y, rotation):
    x, y = grid(size)
    points = np.stack([x, y], axis=-1)
    return np.einsum("...i,ij,...j->...", points, np.linalg.inv(covariance(sigma_x, sigma_y, rotation)), points)


SHAPES = [(21, 2.5, 2.5, 0.0), (15, 2.8, 0.7, 0.6), (9, 0.4, 1.9, -2.2), (7, 1.0, 3.0, 3.1)]


@pytest.mark.parametrize("size, sigma_x, sigma_y, rotation", SHAPES)
def test_gaussian_kernel_is_the_normalised_multivariate_normal_pdf(size, sigma_x, sigma_y, rotation):
    x, y = grid(size)
    pdf = scipy.stats.multivariate_normal(mean=[0, 0], cov=covariance(sigma_x, sigma_y, rotation))
    expected = pdf.pdf(np.stack([x, y], axis=-1))
    kernel = gaussian_kernel(size=size, sigma_x=sigma_x, sigma_y=sigma_y, rotation=rotation)
    np.testing.assert_allclose(kernel.numpy(), expected / expected.sum(), rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("size, sigma_x, sigma_y, rotation", SHAPES)
@pytest.mark.parametrize("beta", [0.5, 1.0, 3.7])
def test_generalized_and_plateau_kernels_follow_their_formulas(size, sigma_x, sigma_y, rotation, beta):
    q = quadratic(size, sigma_x, sigma_y, rotation)
    generalized = np.exp(-0.5 * q**beta)
    plateau = 1 / (q**beta + 1)
    shape = {"size": size, "sigma_x": sigma_x, "sigma_y": sigma_y, "rotation": rotation, "beta": beta}
    np.testing.assert_allclose(
        generalized_gaussian_kernel(**shape).numpy(), generalized / generalized.sum(), rtol=1e-5, atol=1e-10
    )
    np.testing.assert_allclose(plateau_kernel(**shape).numpy(), plateau / plateau.sum(), rtol=1e-5, atol=1e-10)


@pytest.mark.parametrize("size, omega", [(7, math.pi / 3), (13, math.pi / 5), (21, 2.0), (11, math.pi)])
def test_sinc_kernel_follows_the_bessel_formula_with_its_centre_limit(size, omega):
    x, y = grid(size)
    r = np.hypot(x, y)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = omega * scipy.special.j1(omega * r) / (2 * np.pi * r)
    expected[size // 2, size // 2] = omega**2 / (4 * np.pi)
    np.testing.assert_allclose(sinc_kernel(size=size, omega=omega).numpy(), expected / expected.sum(), atol=1e-7)


def test_random_kernels_sum_to_one_are_odd_and_padded_to_the_largest_size():
    rng = np.random.default_rng(0)
    options = DegradeOptions()
    kinds = set()
    for _ in range(200):
        kernel, params = random_kernel(
            rng,
            kinds=options.kernel_list,
            probs=options.kernel_prob,
            max_size=21,
            sinc_prob=0.1,
            sigma_range=(0.2, 3.0),
            betag_range=(0.5, 4.0),
            betap_range=(1.0, 2.0),
        )
        kinds.add(params["kind"])
        assert kernel.shape == (21, 21) and kernel.dtype == torch.float32
        assert abs(kernel.sum().item() - 1) < 1e-5
        assert params["size"] in range(7, 22, 2)
        if params["kind"] == "sinc":
            low = math.pi / 3 if params["size"] < 13 else math.pi / 5
            assert low <= params["omega"] <= math.pi
        outside = torch.ones(21, 21, dtype=torch.bool)
        pad = (21 - params["size"]) // 2
        outside[pad : 21 - pad, pad : 21 - pad] = False
        assert (kernel[outside] == 0).all(), "a smaller kernel is zero-padded, centred"
    assert kinds == {*options.kernel_list, "sinc"}


@pytest.mark.parametrize(
    "height, width, mode, pad_to", [(30, 27, "mirror", 9), (30, 27, "mirror", 21), (3, 4, "nearest", 9)]
)
def test_blur_equals_scipy_convolve(height, width, mode, pad_to):
    # torch's 'reflect' padding is scipy's 'mirror'; an image smaller than the pad falls back to edge replication.
    # A kernel zero-padded to 21 (as random_kernel gives) blurs as the kernel itself.
    img = torch.rand(2, 3, height, width, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    kernel = gaussian_kernel(size=9, sigma_x=2.0, sigma_y=0.8, rotation=0.7).double()
    out = blur(img, padded(kernel, pad_to)).numpy()
    for b in range(2):
        for c in range(3):
            expected = scipy.ndimage.convolve(img[b, c].numpy(), kernel.numpy(), mode=mode)
            np.testing.assert_allclose(out[b, c], expected, atol=1e-12)


@pytest.mark.parametrize("height, width, size", [(128, 128, 21), (37, 41, 17), (9, 64, 13), (32, 32, 7)])
def test_blur_in_float32_correlates_as_scipy_with_any_kernel(height, width, size):
    # The blur multiplies in the frequency domain at a transform length of its own choosing (here the padded
    # 148 -> 150, 53 -> 54, 61 -> 64 ...): no wrap-around may reach the output, and an asymmetric kernel must be
    # correlated (what F.conv2d and Real-ESRGAN's filter2D do), not flipped. float32: the training precision.
    img = torch.rand(1, 3, height, width, generator=torch.Generator().manual_seed(2))
    kernel = torch.rand(size, size, generator=torch.Generator().manual_seed(3))
    kernel /= kernel.sum()
    out = blur(img, kernel)
    assert out.dtype == torch.float32 and out.shape == img.shape
    mode = "mirror" if size // 2 < min(height, width) else "nearest"
    for c in range(3):
        expected = scipy.ndimage.correlate(img[0, c].double().numpy(), kernel.double().numpy(), mode=mode)
        np.testing.assert_allclose(out[0, c].numpy(), expected, atol=2e-6)


@pytest.mark.parametrize("shape", [(3, 5), (4, 4), (1, 3, 3)])
def test_blur_refuses_a_kernel_without_a_centre(shape):
    with pytest.raises(AssertionError, match="square with an odd side"):
        blur(torch.rand(1, 3, 10, 10), torch.ones(shape))


# ---- noise -----------------------------------------------------------------------------------------------------


def generator(seed=0):
    return torch.Generator().manual_seed(seed)


def test_gaussian_noise_has_the_asked_standard_deviation_and_zero_mean():
    img = torch.full((1, 3, 256, 256), 0.5)
    noise = gaussian_noise(img, sigma=20, gray=False, generator=generator())
    assert abs(noise.std().item() - 20 / 255) < 0.01 * 20 / 255
    assert abs(noise.mean().item()) < 4 * (20 / 255) / math.sqrt(noise.numel())
    assert not torch.equal(noise[:, 0], noise[:, 1]), "colour noise differs between channels"


def test_gray_noise_is_the_same_on_every_channel():
    img = torch.rand(2, 3, 32, 40)
    for noise in (
        gaussian_noise(img, sigma=10, gray=True, generator=generator()),
        poisson_noise(img, scale=1.0, gray=True, generator=generator()),
    ):
        assert torch.equal(noise[:, 0], noise[:, 1]) and torch.equal(noise[:, 1], noise[:, 2])
        assert noise.abs().sum() > 0


def test_poisson_noise_variance_is_img_over_vals_times_scale_squared():
    # every 8-bit level present: 256 distinct values, so vals = 2^ceil(log2 256) = 256
    levels = torch.arange(256, dtype=torch.float32) / 255
    img = levels.repeat(3, 256, 1).unsqueeze(0)  # (1, 3, 256, 256)
    scale = 2.0
    noise = poisson_noise(img, scale=scale, gray=False, generator=generator())
    assert abs(noise.mean().item()) < 1e-3
    for part in (slice(0, 128), slice(128, 256)):  # dark and bright halves: the variance follows the intensity
        expected = img[..., part].mean().item() / 256 * scale**2
        assert abs((noise[..., part] ** 2).mean().item() / expected - 1) < 0.05


@pytest.mark.parametrize("count", [1, 2, 3, 100, 129, 256])
def test_poisson_levels_count_the_distinct_8_bit_values_of_each_image(count):
    values = torch.arange(count, dtype=torch.float32) / 255
    first = values.repeat_interleave(-(-768 // count))[:768].view(1, 3, 16, 16)  # every one of the count values
    second = torch.zeros(1, 3, 16, 16)  # one value: vals 2^0
    expected = 2 ** math.ceil(math.log2(len(np.unique(np.round(first.numpy() * 255)))))
    assert _levels(torch.cat([first, second])) == [expected, 1]


def test_noise_is_a_function_of_the_generator_seed():
    img = torch.rand(1, 3, 16, 16)
    assert torch.equal(
        poisson_noise(img, scale=1.0, gray=False, generator=generator(3)),
        poisson_noise(img, scale=1.0, gray=False, generator=generator(3)),
    )


# ---- JPEG ------------------------------------------------------------------------------------------------------


def psnr(a, b):
    return 10 * math.log10(255**2 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))


def pillow_jpeg(rgb, quality):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=quality, subsampling=2)
    return Image.open(io.BytesIO(buffer.getvalue()))


def torch_jpeg(rgb, quality):
    img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    return (jpeg(img, quality)[0].permute(1, 2, 0) * 255).round().byte().numpy()


def photos():
    import skimage.data

    # crops of sizes that are and are not multiples of 16 (the padding is cropped back)
    return {
        "astronaut": skimage.data.astronaut()[100:260, 150:310],
        "coffee": skimage.data.coffee()[50:250, 100:330],
        "astronaut-odd": skimage.data.astronaut()[3:120, 7:150],
    }


QUALITIES = (30, 50, 75, 95)
# Measured between this JPEG and Pillow's, qualities 30, 50, 75, 95: 46.5..54.8 dB on these crops; on Set5 (whole
# images) 47.7..56.5 dB but woman at quality 50, 41.1 dB (libjpeg's fixed-point DCT puts many of its coefficients
# on the other side of a rounding boundary). The bounds are a few dB below the lowest:
PILLOW_PSNR_BOUND = 44.0
SET5_PSNR_BOUND = 39.0


@pytest.mark.parametrize("quality", QUALITIES)
def test_jpeg_is_close_to_pillows(quality):
    for name, rgb in photos().items():
        ours = torch_jpeg(rgb, quality)
        assert ours.shape == rgb.shape
        assert psnr(ours, np.asarray(pillow_jpeg(rgb, quality))) > PILLOW_PSNR_BOUND, (name, quality)


@pytest.mark.skipif(not (SHARED / "Set5" / "HR").is_dir(), reason=f"Set5 not found under {SHARED}")
def test_jpeg_is_close_to_pillows_on_set5():
    figures = []
    for path in sorted((SHARED / "Set5" / "HR").glob("*.png")):
        rgb = np.asarray(Image.open(path).convert("RGB"))
        for quality in QUALITIES:
            figures.append(psnr(torch_jpeg(rgb, quality), np.asarray(pillow_jpeg(rgb, quality))))
    assert min(figures) > SET5_PSNR_BOUND and np.median(figures) > 47, figures


def test_jpeg_moves_away_from_the_original_as_quality_drops():
    for rgb in photos().values():
        fidelity = [psnr(torch_jpeg(rgb, quality), rgb) for quality in (10, 30, 50, 75, 95)]
        assert fidelity == sorted(fidelity), fidelity


def test_jpeg_makes_block_artefacts_not_a_blur():
    """A Gaussian blur as far from the original as the JPEG is far from Pillow's JPEG too: the errors match in
    kind (blocks, ringing), not only in size."""
    rgb = photos()["astronaut"]
    pillow = np.asarray(pillow_jpeg(rgb, 30))
    ours = torch_jpeg(rgb, 30)
    target = psnr(ours, rgb)
    blurs = [scipy.ndimage.gaussian_filter(rgb.astype(np.float64), (s, s, 0)) for s in np.linspace(0.3, 2.0, 35)]
    blurred = min(blurs, key=lambda b: abs(psnr(b, rgb) - target))
    assert abs(psnr(blurred, rgb) - target) < 1.0
    assert psnr(ours, pillow) > psnr(blurred, pillow) + 10


@pytest.mark.parametrize("quality", [1, 10, 25, 30, 49, 50, 51, 75, 90, 95, 100])
def test_quantisation_tables_are_libjpegs(quality):
    tables = pillow_jpeg(np.zeros((16, 16, 3), np.uint8), quality).quantization  # natural order
    assert quality_scaled(LUMA_TABLE, quality).flatten().tolist() == list(tables[0])
    assert quality_scaled(CHROMA_TABLE, quality).flatten().tolist() == list(tables[1])


def test_jpeg_takes_one_quality_per_image():
    rgb = photos()["astronaut"][:64, :80]
    img = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    batch = jpeg(torch.cat([img, img]), [30, 95])
    assert torch.equal(batch[0:1], jpeg(img, 30)) and torch.equal(batch[1:2], jpeg(img, 95))
    assert torch.equal(batch, torch.round(batch * 255) / 255)


# ---- resize ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("height, width", [(48, 48), (48, 72), (96, 36)])
def test_the_lr_is_exactly_the_hr_size_over_scale(scale, height, width):
    hr = torch.rand(2, 3, height, width, generator=generator())
    lr, _ = Degrader(options=DegradeOptions(), scale=scale, seed=0)(hr, [0, 1])
    assert lr.shape == (2, 3, height // scale, width // scale)


def test_resize_keeps_at_least_one_pixel_and_antialiases_downscaling():
    img = torch.rand(1, 3, 40, 40, generator=generator())
    assert resize(img, (0.4, 3), "bicubic").shape[-2:] == (1, 3)
    stripes = torch.zeros(1, 1, 40, 40)
    stripes[..., ::2] = 1  # the finest detail: a downscale that averages gives about 0.5 everywhere
    for mode in ("area", "bilinear", "bicubic"):
        assert (resize(stripes, (10, 10), mode) - 0.5).abs().max() < 0.05, mode


# ---- pipeline --------------------------------------------------------------------------------------------------


def hr_batch(count, size=48, seed=0):
    return torch.rand(count, 3, size, size, generator=generator(seed))


def test_a_sample_degrades_the_same_in_any_batch():
    degrader = Degrader(options=DegradeOptions(), scale=4, seed=7)
    patches = hr_batch(3)  # the patches of samples 3, 5 and 9
    alone, alone_drawn = degrader(patches[1:2], [5])
    batch, batch_drawn = degrader(patches, [3, 5, 9])
    reversed_batch, reversed_drawn = degrader(patches.flip(0), [9, 5, 3])
    assert torch.equal(alone[0], batch[1]) and torch.equal(alone[0], reversed_batch[1])
    assert alone_drawn[0] == batch_drawn[1] == reversed_drawn[1]
    assert torch.equal(batch[0], reversed_batch[2]) and batch_drawn[2] == reversed_drawn[0]
    again, again_drawn = degrader(patches, [3, 5, 9])
    assert torch.equal(again, batch) and again_drawn == batch_drawn


def test_indices_and_seeds_give_different_degradations():
    patch = hr_batch(1).expand(3, -1, -1, -1)
    lr, drawn = Degrader(options=DegradeOptions(), scale=4, seed=0)(patch, [0, 1, 2])
    assert not torch.equal(lr[0], lr[1]) and drawn[0] != drawn[1] != drawn[2]
    other, other_drawn = Degrader(options=DegradeOptions(), scale=4, seed=1)(patch, [0, 1, 2])
    assert not torch.equal(lr, other) and other_drawn != drawn


def test_the_lr_is_float32_in_0_1_on_8_bit_levels():
    lr, drawn = Degrader(options=DegradeOptions(), scale=2, seed=0)(hr_batch(4, size=32).double(), range(4))
    assert lr.dtype == torch.float32 and lr.min() >= 0 and lr.max() <= 1
    assert torch.equal(lr, torch.round(lr * 255) / 255)
    assert all(not d["bicubic"] and {"blur_1", "noise_1", "jpeg_1", "resize_2", "jpeg_2"} <= d.keys() for d in drawn)
    assert all(30 <= d["jpeg_1"] <= 95 and 30 <= d["jpeg_2"] <= 95 for d in drawn)


def test_bicubic_share_one_returns_the_bicubic_lr_unchanged():
    hr = hr_batch(3)
    bicubic = torch.rand(3, 3, 12, 12, generator=generator(5))
    lr, drawn = Degrader(options=DegradeOptions(bicubic_share=1.0), scale=4, seed=0)(hr, [0, 1, 2], bicubic)
    assert torch.equal(lr, bicubic) and drawn == [{"bicubic": True}] * 3
    with pytest.raises(ValueError, match="bicubic_lr"):
        Degrader(options=DegradeOptions(bicubic_share=0.5), scale=4, seed=0)(hr, [0, 1, 2])


def test_bicubic_share_half_keeps_about_half_and_leaves_the_others_as_they_were():
    count = 160
    hr = hr_batch(1, size=16).expand(count, -1, -1, -1)
    bicubic = torch.zeros(count, 3, 4, 4)
    _, drawn = Degrader(options=DegradeOptions(bicubic_share=0.5), scale=4, seed=0)(hr, range(count), bicubic)
    kept = sum(d["bicubic"] for d in drawn)
    assert 0.5 * count - 3 * math.sqrt(count / 4) < kept < 0.5 * count + 3 * math.sqrt(count / 4)
    # the share is drawn first and always: a sample that is degraded is degraded as with no share at all
    index = next(i for i, d in enumerate(drawn) if not d["bicubic"])
    _, plain = Degrader(options=DegradeOptions(), scale=4, seed=0)(hr[:1], [index])
    assert plain[0] == drawn[index]


def test_summarize_counts_what_was_drawn():
    hr = hr_batch(6, size=32)
    _, drawn = Degrader(options=DegradeOptions(bicubic_share=0.3), scale=4, seed=0)(
        hr, range(6), torch.zeros(6, 3, 8, 8)
    )
    summary = summarize(drawn)
    degraded = [d for d in drawn if not d["bicubic"]]
    assert summary["samples"] == 6 and summary["bicubic"] == 6 - len(degraded)
    blurs = sum(1 + (d["blur_2"] is not None) for d in degraded)
    assert sum(summary["kernels"].values()) == blurs
    assert summary["mean_jpeg_quality"] == pytest.approx(
        np.mean([d[k] for d in degraded for k in ("jpeg_1", "jpeg_2")]), abs=1e-3
    )


# ---- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "mapping, option, problem",
    [
        ({"blur_sigma": [-0.5, 3]}, "blur_sigma", "sigma -0.5 is outside 0.01..100"),
        # magnitudes no draw can compute: a sigma whose covariance is singular, one past any kernel, a kernel of
        # seconds a patch, an upscale that only costs memory, an integer float() cannot hold
        ({"blur_sigma": [1.0e-200, 1.0e-199]}, "blur_sigma", "sigma 1e-200 is outside 0.01..100"),
        ({"blur_sigma_2": [1.0, 1.0e200]}, "blur_sigma_2", "sigma 1e+200 is outside 0.01..100"),
        ({"blur_kernel_size": 99999999}, "blur_kernel_size", "kernel size 99999999 is above 63"),
        ({"resize_range": [1, 1000000.0]}, "resize_range", "scale 1000000.0 is above 8"),
        ({"sinc_prob": 10**400}, "sinc_prob", "expected a probability"),
        ({"jpeg_range": [30, 10**400]}, "jpeg_range", "expected a range"),
        # YAML 1.1 reads 1e-3 (no dot) as text: the line says how to write it
        ({"noise_range": ["1e-3", 5]}, "noise_range", "write it with a dot and a signed exponent"),
        ({"jpeg_range": [0, 95]}, "jpeg_range", "quality 0 is outside 1..100"),
        ({"jpeg_range_2": [30, 101]}, "jpeg_range_2", "quality 101 is outside 1..100"),
        ({"sinc_prob": -0.1}, "sinc_prob", "probability -0.1 is outside 0..1"),
        ({"second_blur_prob": 1.5}, "second_blur_prob", "probability 1.5 is outside 0..1"),
        ({"resize_prob": [0.5, 0.4, 0.3]}, "resize_prob", "sum to 1.2, not 1"),
        ({"kernel_prob": [0.5, 0.5]}, "kernel_prob", "expected 6 probabilities"),
        ({"blur_radius": 3}, "blur_radius", "unknown option (valid: kernel_list,"),
        ({"kernel_list": ["iso", "box"], "kernel_prob": [0.5, 0.5]}, "kernel_list", "unknown kernel 'box'"),
        ({"resize_modes": ["nearest"]}, "resize_modes", "unknown resize mode 'nearest'"),
        ({"blur_kernel_size": 20}, "blur_kernel_size", "kernel size 20 is even"),
        ({"noise_range": [30, 1]}, "noise_range", "low 30 is above high 1"),
        ({"gray_noise_prob": "often"}, "gray_noise_prob", "expected a probability"),
        ({"resize_range": [0.5, 0.9]}, "resize_range", "must hold 1"),
    ],
)
def test_a_bad_option_is_one_line_naming_it(mapping, option, problem):
    with pytest.raises(DegradeOptionError) as raised:
        DegradeOptions.from_mapping(mapping, source="pan_x4_realworld.yaml")
    message = str(raised.value)
    assert message.startswith(f"pan_x4_realworld.yaml: degradations.{option}: ") and problem in message
    assert "\n" not in message and isinstance(raised.value, UserError)


def test_options_built_directly_are_checked_too():
    with pytest.raises(DegradeOptionError, match="jpeg_range: quality 0 is outside 1..100"):
        DegradeOptions(jpeg_range=(0, 95))


def test_defaults_are_real_esrgans_x4_recipe():
    options = DegradeOptions()
    assert options.kernel_prob == (0.45, 0.25, 0.12, 0.03, 0.12, 0.03) == options.kernel_prob_2
    assert options.kernel_list[0] == "iso" and options.kernel_list[-1] == "plateau_aniso"
    assert (options.blur_kernel_size, options.sinc_prob, options.second_blur_prob, options.final_sinc_prob) == (
        21,
        0.1,
        0.8,
        0.8,
    )
    assert options.blur_sigma == (0.2, 3.0) and options.blur_sigma_2 == (0.2, 1.5)
    assert options.resize_prob == (0.2, 0.7, 0.1) and options.resize_prob_2 == (0.3, 0.4, 0.3)
    assert options.resize_range == (0.15, 1.5) and options.resize_range_2 == (0.3, 1.2)
    assert options.noise_range == (1.0, 30.0) and options.noise_range_2 == (1.0, 25.0)
    assert options.poisson_scale_range == (0.05, 3.0) and options.poisson_scale_range_2 == (0.05, 2.5)
    assert options.jpeg_range == (30, 95) == options.jpeg_range_2 and options.gray_noise_prob == 0.4
    assert options.bicubic_share == 0.0 and options.resize_modes == ("area", "bilinear", "bicubic")


def test_as_dict_gives_back_the_same_options():
    options = DegradeOptions(jpeg_range=(40, 90), bicubic_share=0.2)
    assert DegradeOptions.from_mapping(options.as_dict(), source="log") == options


def test_probabilities_within_the_checks_tolerance_and_one_sided_beta_ranges_draw():
    """What the checks accept, the draws can draw: thirds as 0.3333333 (numpy's choice wants a sum within 1e-8),
    and a beta range that does not hold 1 (only flat kernels), drawn uniformly over it."""
    options = DegradeOptions.from_mapping(
        {
            "resize_prob": [0.3333333, 0.3333333, 0.3333333],
            "kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.0300001],
            "kernel_list_2": ["plateau_iso"],
            "kernel_prob_2": [1],
            "betap_range_2": [1.2, 1.9],
            "second_blur_prob": 1,
            "sinc_prob_2": 0,
            "betag_range": [1.5, 4],
        },
        source="test",
    )
    lr, drawn = Degrader(options=options, scale=4, seed=0)(torch.rand(6, 3, 32, 32), range(6))
    assert lr.shape == (6, 3, 8, 8) and torch.isfinite(lr).all()
    betas = [d["blur_2"]["beta"] for d in drawn]
    assert all(1.2 <= beta <= 1.9 for beta in betas)
