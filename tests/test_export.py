"""ONNX export: dynamic shapes, metadata, fp32/fp16/int8 parity on real photos, and a parity check that fails."""

import json
import re

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from export.convert import export_fp32, graph_friendly
from export.parity import ParityError, check_parity, load_parity_images
from export.quantize import to_fp16
from export.runtime import INPUT_NAME, OUTPUT_NAME, OnnxUpscaler, create_session
from export.to_onnx import export, main
from sr_models import create_model, list_models
from sr_models.layers import conv_before_pixel_shuffle
from sr_models.registry import architecture
from tests.conftest import SHARED, needs_shared

TINY = {name: architecture(name).tiny for name in list_models()}
MODEL_SCALES = [(name, scale) for name in list_models() for scale in architecture(name).scales]


def tiny_model(name, scale, seed=0):
    torch.manual_seed(seed)
    return create_model(name, scale=scale, **TINY[name]).eval()


@pytest.fixture(scope="module")
def photos():
    """The default parity images (held-out built-in photos, HR + bicubic LR), per scale, loaded once."""
    cache = {}
    return lambda scale: cache.setdefault(scale, load_parity_images(None, scale=scale))


@pytest.mark.parametrize("name, scale", MODEL_SCALES)
def test_fp32_export_matches_pytorch_on_photos(tmp_path, photos, name, scale):
    model = tiny_model(name, scale)
    output = tmp_path / f"{name}_x{scale}.onnx"
    report = export(model, output, parity_data=None, progress=False, parity=False)
    assert report is None and output.is_file()
    report = check_parity(model, output, photos(scale), precision="fp32", progress=False)
    assert report["passed"], report["failures"]
    # fp32 arithmetic differences are ~1e-7: far above the 60 dB threshold, on every image and batch item.
    assert report["min_parity_psnr_db"] > 100
    sizes = {row["size"] for row in report["images"]}
    assert len(sizes) >= 3 and any(w != h for w, h in (s.split("x") for s in sizes)), sizes  # several, non-square
    assert sum("batch item" in row["name"] for row in report["images"]) >= 2
    with_hr = [row for row in report["images"] if row["psnr_y_torch"] is not None]
    assert with_hr and all(abs(r["psnr_y_onnx"] - r["psnr_y_torch"]) < 0.01 for r in with_hr)


@pytest.mark.parametrize("name", list_models())
def test_fp16_export_passes_parity_through_the_cli_path(tmp_path, name):
    model = tiny_model(name, 4)
    output = tmp_path / "model.onnx"
    report = export(model, output, precision="fp16", progress=False)
    assert report["passed"] and report["min_parity_psnr_db"] >= 45
    assert json.loads((tmp_path / "model.onnx.parity.json").read_text())["precision"] == "fp16"
    graph = onnx.load(str(output)).graph
    # fp16 inside, float32 at the interface (docs/export.md: why the I/O stays float32).
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".partial")] == []


def test_dynamic_batch_height_and_width(tmp_path):
    # Exported from a 32x32 example (export.convert.EXAMPLE_SHAPE), run at 17x23 and as a batch of 3.
    for name in list_models():
        model = tiny_model(name, 2)
        path = tmp_path / f"{name}.onnx"
        export_fp32(model, path)
        dims = [d.dim_param or d.dim_value for d in onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim]
        assert dims[1] == 3 and all(isinstance(d, str) for d in (dims[0], dims[2], dims[3])), dims
        session = create_session(path, device="cpu")
        for shape in [(1, 3, 17, 23), (3, 3, 17, 23)]:
            x = torch.rand(shape)
            (ours,) = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
            with torch.no_grad():
                reference = model(x).numpy()
            assert ours.shape == (shape[0], 3, 34, 46)
            np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_dynamo_exporter_gives_the_same_dynamic_model(tmp_path):
    pytest.importorskip("onnxscript", reason="the dynamo exporter needs onnxscript (not a dependency of ours)")
    model = tiny_model("pan", 2)
    path = tmp_path / "dynamo.onnx"
    export_fp32(model, path, exporter="dynamo", opset=18)
    x = torch.rand(3, 3, 17, 23)
    (ours,) = create_session(path, device="cpu").run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(ours, model(x).numpy(), atol=1e-5)
    assert OnnxUpscaler(path).metadata["exporter"] == "dynamo"


def test_graph_friendly_forms_compute_the_same_and_drop_the_einops_transposes(tmp_path):
    for name in list_models():
        model = tiny_model(name, 4)
        x = torch.rand(2, 3, 13, 19)
        with torch.no_grad():
            # Bitwise for PAN; SRResNet's moved tail conv sums the same products in another order.
            torch.testing.assert_close(
                graph_friendly(model)(x), model(x), rtol=0, atol=1e-6 if name == "srresnet" else 0
            )
        export_fp32(model, tmp_path / "friendly.onnx")
        export_fp32(model, tmp_path / "einops.onnx", graph_friendly_forms=False)
        ops = lambda p: {node.op_type for node in onnx.load(str(tmp_path / p)).graph.node}  # noqa: E731
        assert "Transpose" in ops("einops.onnx") and "Transpose" not in ops("friendly.onnx")
        if name == "srresnet":  # the tail conv runs before the last shuffle: the graph ends with DepthToSpace
            assert onnx.load(str(tmp_path / "friendly.onnx")).graph.node[-1].op_type == "DepthToSpace"


@pytest.mark.parametrize("kernel, r", [(9, 2), (9, 3), (3, 2), (5, 3), (1, 2)])
def test_a_conv_after_a_pixel_shuffle_moves_before_it(kernel, r):
    torch.manual_seed(kernel * r)
    conv = torch.nn.Conv2d(5, 3, kernel, padding=kernel // 2)
    x = torch.randn(2, 5 * r * r, 7, 6)  # small enough that the kernel reaches past every border
    moved = conv_before_pixel_shuffle(conv, r)
    assert moved.kernel_size[0] == 2 * -(-(kernel // 2) // r) + 1
    with torch.no_grad():
        torch.testing.assert_close(
            torch.nn.PixelShuffle(r)(moved(x)), conv(torch.nn.PixelShuffle(r)(x)), rtol=0, atol=1e-5
        )


def test_metadata_round_trip(tmp_path):
    model = tiny_model("pan", 3)
    path = tmp_path / "pan.onnx"
    export_fp32(model, path, opset=18)
    upscaler = OnnxUpscaler(path, device="cpu")
    assert upscaler.spec == model.spec
    assert upscaler.scale == 3 and upscaler.name == "pan (onnx fp32)"
    meta = upscaler.metadata
    assert (meta["layout"], meta["value_range"], meta["precision"]) == ("NCHW RGB", "[0, 1]", "fp32")
    assert (meta["input"], meta["output"], meta["opset"]) == ("lr", "sr", "18")
    assert onnx.load(str(path)).opset_import[0].version == 18
    to_fp16(path, tmp_path / "half.onnx")  # conversion alone keeps the props; export() then sets precision
    assert OnnxUpscaler(tmp_path / "half.onnx").metadata["model"] == "pan"


def perturbed(model, scale=0.05):
    """A copy with noise on one conv: a broken export in miniature."""
    model = graph_friendly(model)
    with torch.no_grad():
        conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.weight.add_(scale * torch.randn_like(conv.weight))
    return model


def test_parity_fails_on_a_perturbed_model_and_leaves_no_onnx(tmp_path, monkeypatch, capsys):
    import export.to_onnx as to_onnx

    real_export = to_onnx.export_fp32
    # The ONNX file is made from a perturbed copy while parity compares against the real model.
    monkeypatch.setattr(to_onnx, "export_fp32", lambda model, path, **kw: real_export(perturbed(model), path, **kw))
    model = tiny_model("pan", 2)
    output = tmp_path / "broken.onnx"
    with pytest.raises(ParityError, match=r"\n  \w+: onnxruntime vs PyTorch \d+\.\d+ dB < 60 dB required for fp32"):
        export(model, output, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx.parity-failed.json"]
    failed = json.loads((tmp_path / "broken.onnx.parity-failed.json").read_text())
    assert failed["passed"] is False and failed["min_parity_psnr_db"] < 60

    # The CLI: exit status non-zero, one line per failing image, no traceback.
    weights = tmp_path / "tiny.safetensors"
    from sr_models.weights import save_weights

    save_weights(model, weights)
    with pytest.raises(SystemExit) as exit_info:
        main(["--weights", str(weights), "--output", str(output)])
    assert "parity failed, model not written" in str(exit_info.value) and "dB < 60 dB" in str(exit_info.value)
    assert not output.exists()


def test_int8_on_a_tiny_model(tmp_path, photos):
    model = tiny_model("pan", 4)
    calibration = tmp_path / "calibration"
    calibration.mkdir()
    for image in photos(2):  # other LR images than the x4 parity ones
        Image.fromarray(image.lr).save(calibration / f"{image.name}.png")
    output = tmp_path / "int8.onnx"
    report = export(model, output, precision="int8", calibration=calibration, progress=False)
    assert report["passed"]
    drops = [row["psnr_y_drop_db"] for row in report["images"] if "psnr_y_drop_db" in row]
    assert len(drops) == len(photos(4)) and max(drops) <= 0.3  # every default parity image, photos and graphics
    ops = {node.op_type for node in onnx.load(str(output)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert OnnxUpscaler(output).metadata["precision"] == "int8"
    # An impossible budget fails, naming the image and the drop.
    strict = check_parity(model, output, photos(4), precision="int8", max_int8_drop=-1.0, progress=False)
    assert not strict["passed"]
    pattern = r"^\w+: int8 PSNR_Y \d+\.\d+ dB is -?\d+\.\d+ dB below fp32 PyTorch"
    assert any(re.search(pattern, line) for line in strict["failures"])


@needs_shared
def test_official_pan_x4_onnx_reproduces_the_published_set5_score(tmp_path):
    from sr_models.evaluation.samples import load_benchmark
    from sr_models.evaluation.scoring import score
    from sr_models.weights import load_model
    from train.evaluate import load_upscaler

    model = load_model(SHARED / "weights" / "PANx4_DF2K.pth", name="pan", scale=4)
    output = tmp_path / "pan_x4.onnx"
    export(model, output, parity=False, progress=False)
    samples = load_benchmark(SHARED / "Set5" / "HR", scale=4, lr_dir=SHARED / "Set5" / "LR_bicubic" / "X4")
    result = score(load_upscaler(output), samples, scale=4, progress=False)
    assert result["mean"]["psnr_y"] == pytest.approx(32.1311, abs=5e-4)
    assert result["mean"]["ssim_y"] == pytest.approx(0.8948, abs=1e-4)
    # Parity on the smallest Set5 image only: PyTorch eager PAN is slow on CPU, and the score above already
    # pins the whole set (the full Set5 parity report of this model: docs/export.md).
    bird = [image for image in load_parity_images(SHARED / "Set5", scale=4) if image.name == "bird"]
    report = check_parity(model, output, bird, precision="fp32", progress=False)
    assert report["passed"] and report["min_parity_psnr_db"] >= 60
