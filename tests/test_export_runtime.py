"""Deployment side: ONNX validation, tiling without seams, and export/upscale.py running with torch blocked."""

import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from export.convert import export_fp32
from export.parity import load_parity_images
from export.runtime import OnnxModelError, OnnxUpscaler, check_model, choose_providers, create_session, split_evenly
from sr_models import create_model
from sr_models.evaluation.metrics import psnr
from sr_models.images import load_rgb
from tests.conftest import REPO


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """A small SRResNet x2 (4 residual blocks: a receptive field of ~20 px, so tile borders would show)."""
    torch.manual_seed(0)
    model = create_model("srresnet", scale=2, channels=8, num_blocks=4).eval()
    path = tmp_path_factory.mktemp("onnx") / "srresnet_x2.onnx"
    export_fp32(model, path)
    return path


@pytest.fixture(scope="module")
def photo_lr():
    """The largest non-square LR of the built-in held-out photos at x2 (e.g. coffee: 200x300)."""
    images = [image.lr for image in load_parity_images(None, scale=2) if image.lr.shape[0] != image.lr.shape[1]]
    return max(images, key=lambda lr: lr.size)


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::torch.jit.TracerWarning")
def test_check_model_rejects_wrong_io_names_and_junk(tmp_path):
    torch.manual_seed(0)
    model = create_model("pan", scale=2, channels=8, upsample_channels=8, num_blocks=1).eval()
    wrong = tmp_path / "wrong_names.onnx"
    torch.onnx.export(
        model, (torch.rand(1, 3, 16, 16),), str(wrong), dynamo=False, input_names=["input"], output_names=["output"]
    )
    with pytest.raises(OnnxModelError, match=r"wrong_names.onnx: expected one input named 'lr' .* found 'input'"):
        check_model(wrong)
    with pytest.raises(OnnxModelError, match="expected one input named 'lr'"):
        OnnxUpscaler(wrong)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    with pytest.raises(OnnxModelError, match="junk.onnx: not a valid ONNX model"):
        create_session(junk)
    with pytest.raises(OnnxModelError, match="no such file"):
        check_model(tmp_path / "missing.onnx")


def test_check_model_rejects_wrong_rank(tmp_path, model_path):
    graph_model = onnx.load(str(model_path))
    graph_model.graph.input[0].type.tensor_type.shape.dim.pop()  # (N, 3, H) claims rank 3
    path = tmp_path / "rank3.onnx"
    onnx.save(graph_model, str(path))
    with pytest.raises(OnnxModelError, match="rank"):
        check_model(path)


def test_choose_providers():
    assert choose_providers("cpu") == ["CPUExecutionProvider"]
    assert choose_providers("auto")[-1] == "CPUExecutionProvider"
    for device in ("tpu", "cuda:x", "gpu0", ""):
        with pytest.raises(ValueError, match="not a device; use auto, cpu, cuda or cuda:N"):
            choose_providers(device)
    if "CUDAExecutionProvider" not in __import__("onnxruntime").get_available_providers():
        with pytest.raises(ValueError, match="this onnxruntime has no CUDA provider"):  # asked for, not silently CPU
            choose_providers("cuda:0")


def test_split_evenly_covers_without_slivers():
    for length, tile in [(100, 32), (64, 64), (65, 64), (1, 8), (2160, 256)]:
        parts = split_evenly(length, tile)
        assert parts[0][0] == 0 and parts[-1][1] == length
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
        sizes = [stop - start for start, stop in parts]
        assert max(sizes) <= tile and max(sizes) - min(sizes) <= 1


def test_tiled_output_matches_untiled(model_path, photo_lr):
    height, width, _ = photo_lr.shape
    whole = OnnxUpscaler(model_path, tile=None)(photo_lr)
    assert whole.shape == (2 * height, 2 * width, 3)
    tiled = OnnxUpscaler(model_path, tile=64, tile_pad=16)
    assert len(tiled.tiles(height, width)) == -(-height // 64) * -(-width // 64) >= 6
    assert psnr(tiled(photo_lr), whole, y_channel=False) >= 50
    # Without context the tile borders do show: the check above is not vacuous.
    assert psnr(OnnxUpscaler(model_path, tile=64, tile_pad=0)(photo_lr), whole, y_channel=False) < 50


BLOCK_TORCH = """
import runpy, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError, as on a machine without PyTorch
sys.argv = ["upscale.py", *sys.argv[1:]]
try:
    runpy.run_path({script!r}, run_name="__main__")
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision") and sys.modules[m])
    print("torch modules loaded:", loaded)
"""


def test_upscale_cli_runs_with_torch_blocked(tmp_path, model_path, photo_lr):
    inputs = tmp_path / "in"
    inputs.mkdir()
    Image.fromarray(photo_lr).save(inputs / "photo.png")
    Image.fromarray(photo_lr[:40, :50]).convert("L").save(inputs / "gray.png")
    Image.fromarray(photo_lr[:30, :20]).convert("RGBA").save(inputs / "alpha.webp", lossless=True)
    script = BLOCK_TORCH.format(script=str(REPO / "export" / "upscale.py"))
    command = [sys.executable, "-c", script, str(model_path), str(inputs), str(tmp_path / "out"), "--tile", "64"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch modules loaded: []" in result.stdout
    reference = OnnxUpscaler(model_path, tile=64)
    for name in ("photo.png", "gray.png", "alpha.webp"):
        written = load_rgb(tmp_path / "out" / name)
        np.testing.assert_array_equal(written, reference(load_rgb(inputs / name)))

    # A bad model path fails with one line naming the file, not a traceback.
    bad = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "none.onnx"), str(inputs / "photo.png"), str(tmp_path / "x.png")],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert bad.returncode != 0 and "none.onnx: no such file" in bad.stderr and "Traceback" not in bad.stderr


def test_evaluate_accepts_onnx_with_the_same_figures(model_path, photo_lr):
    from sr_models.evaluation.samples import Sample
    from sr_models.evaluation.scoring import TorchUpscaler, score
    from train.evaluate import load_upscaler

    hr_images = load_parity_images(None, scale=2)[:2]
    samples = [Sample(image.name, image.lr, image.hr) for image in hr_images]
    torch.manual_seed(0)
    model = create_model("srresnet", scale=2, channels=8, num_blocks=4).eval()
    onnx_report = score(load_upscaler(model_path), samples, scale=2, progress=False)
    torch_report = score(TorchUpscaler(model), samples, scale=2, progress=False)
    assert onnx_report["model"] == "srresnet (onnx fp32)"
    for ours, reference in zip(onnx_report["images"], torch_report["images"]):
        assert ours["psnr_y"] == pytest.approx(reference["psnr_y"], abs=1e-3)


def test_self_ensemble_in_onnx_matches_torch_tiled_or_not(model_path, photo_lr):
    from sr_models.evaluation.scoring import TorchUpscaler

    torch.manual_seed(0)
    model = create_model("srresnet", scale=2, channels=8, num_blocks=4).eval()
    reference = TorchUpscaler(model, self_ensemble=True)(photo_lr)
    whole = OnnxUpscaler(model_path, tile=0, self_ensemble=True)(photo_lr)
    tiled = OnnxUpscaler(model_path, tile=64, self_ensemble=True)(photo_lr)
    assert np.abs(whole.astype(int) - reference).max() <= 1  # float32 ORT vs torch: at most a rounding flip
    assert psnr(tiled, whole) >= 50  # tiles ensembled one by one: the seams stay invisible, as without ensemble
    assert psnr(whole, OnnxUpscaler(model_path, tile=0)(photo_lr)) < 50  # the ensemble did change the image


def test_upscale_cli_self_ensemble_runs_with_torch_blocked(tmp_path, model_path, photo_lr):
    lr = photo_lr[:40, :56]
    Image.fromarray(lr).save(tmp_path / "photo.png")
    script = BLOCK_TORCH.format(script=str(REPO / "export" / "upscale.py"))
    command = [
        sys.executable,
        "-c",
        script,
        str(model_path),
        str(tmp_path / "photo.png"),
        str(tmp_path / "x.png"),
        "--tile",
        "32",
        "--self-ensemble",
    ]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "torch modules loaded: []" in result.stdout
    expected = OnnxUpscaler(model_path, tile=32, self_ensemble=True)(lr)
    np.testing.assert_array_equal(load_rgb(tmp_path / "x.png"), expected)
    assert not np.array_equal(expected, OnnxUpscaler(model_path, tile=32)(lr))
