"""Self-ensemble (x8 geometric test-time augmentation) against EDSR's own formulation of it."""

import numpy as np
import pytest
import torch

from sr_models import create_model
from sr_models.ensemble import self_ensemble
from sr_models.evaluation.metrics import to_uint8
from sr_models.evaluation.samples import load_benchmark
from sr_models.evaluation.scoring import TorchUpscaler, score
from tests.conftest import SHARED, needs_shared
from train.evaluate import load_upscaler

# Measured (docs/metrics.md): python train/evaluate.py --weights ../shared/data/weights/PANx4_DF2K.pth --model pan
# --scale 4 --hr ../shared/data/Set5/HR --lr ../shared/data/Set5/LR_bicubic/X4 --self-ensemble  (plain: 32.1311)
PAN_X4_SELF_ENSEMBLE_PSNR_Y = 32.2368


def edsr_forward_x8(model, x):
    """EDSR's `forward_x8` (Lim et al. 2017, the reference code), in torch: transposes and flips, then the mean."""
    inputs = [x]
    for op in ("v", "h", "t"):
        inputs.extend([_edsr_transform(t, op) for t in inputs])
    outputs = [model(t) for t in inputs]
    for i, y in enumerate(outputs):
        if i > 3:
            y = _edsr_transform(y, "t")
        if i % 4 > 1:
            y = _edsr_transform(y, "h")
        if (i % 4) % 2 == 1:
            y = _edsr_transform(y, "v")
        outputs[i] = y
    return torch.stack(outputs).mean(dim=0)


def _edsr_transform(t, op):
    return {"v": lambda: t.flip(-1), "h": lambda: t.flip(-2), "t": lambda: t.transpose(-1, -2)}[op]()


@pytest.fixture
def tiny_model():
    torch.manual_seed(0)
    return create_model("srresnet", scale=2, channels=8, num_blocks=1).eval()


@torch.inference_mode()
def test_matches_edsr_forward_x8_on_a_non_square_input(tiny_model):
    x = torch.rand(2, 3, 9, 14)
    ours = self_ensemble(lambda b: tiny_model(torch.from_numpy(b)).numpy(), x.numpy())
    reference = edsr_forward_x8(tiny_model, x).numpy()
    assert ours.shape == (2, 3, 18, 28)
    np.testing.assert_allclose(ours, reference, atol=1e-6)
    # And it is not the plain output: the tiny model is not equivariant, so the test could tell them apart.
    assert np.abs(ours - tiny_model(x).numpy()).max() > 1e-3


def test_an_equivariant_upscaler_is_unchanged():
    nearest = lambda b: b.repeat(3, axis=-2).repeat(3, axis=-1)  # noqa: E731  (commutes with flips and turns)
    x = np.random.default_rng(0).random((1, 3, 5, 7)).astype(np.float32)
    np.testing.assert_array_equal(self_ensemble(nearest, x), nearest(x))


@torch.inference_mode()
def test_torch_upscaler_rounds_the_ensemble_mean(tiny_model):
    lr = np.random.default_rng(1).integers(0, 256, (11, 6, 3), dtype=np.uint8)
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255
    expected = to_uint8(edsr_forward_x8(tiny_model, x)[0].permute(1, 2, 0).numpy())
    upscaler = TorchUpscaler(tiny_model, self_ensemble=True)
    np.testing.assert_array_equal(upscaler(lr), expected)
    assert upscaler.name == "srresnet +self-ensemble"


@needs_shared
def test_pan_x4_set5_gains_with_self_ensemble():
    """docs/metrics.md: the authors' PAN x4 on Set5, official LR, PSNR_Y 32.1311 dB plain, with self-ensemble more."""
    upscaler = load_upscaler(SHARED / "weights" / "PANx4_DF2K.pth", model="pan", scale=4, self_ensemble=True)
    samples = load_benchmark(SHARED / "Set5" / "HR", scale=4, lr_dir=SHARED / "Set5" / "LR_bicubic" / "X4")
    report = score(upscaler, samples, scale=4, progress=False)
    assert report["mean"]["psnr_y"] == pytest.approx(PAN_X4_SELF_ENSEMBLE_PSNR_Y, abs=5e-4)
