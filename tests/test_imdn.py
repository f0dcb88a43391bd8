"""IMDN, the third architecture, added through sr_models/archs: its size, its authors' weights and table, recognition
of its weights files, training and export."""

import re

import pytest
import torch

from sr_models import create_model, load_model
from sr_models.archs.imdn import _AUTHORS_RENAMES
from sr_models.weights import checkpoint_spec
from tests.conftest import SHARED, needs_shared
from train.evaluate import main as evaluate_main

# Hui et al., ACM MM 2019, table 3 (Set5, PSNR_Y / SSIM_Y): the figures the authors' weights must give.
PUBLISHED_SET5 = {2: (38.00, 0.9605), 3: (34.36, 0.9270), 4: (32.21, 0.8948)}


@pytest.mark.parametrize("scale,parameters", [(2, 694_404), (3, 703_059), (4, 715_176)])
def test_parameter_count_is_the_authors(scale, parameters):
    assert sum(p.numel() for p in create_model("imdn", scale=scale).parameters()) == parameters


@needs_shared
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_authors_weights_reproduce_their_set5_table(scale, capsys):
    """No --model or --scale: the file is recognised from its tensors (`module.` prefixes, the authors' names)."""
    evaluate_main(
        ["--weights", str(SHARED / "weights" / f"IMDN_x{scale}.pth"), "--hr", str(SHARED / "Set5"), "--device", "cpu"]
    )
    mean = capsys.readouterr().out.splitlines()[-1].split()
    psnr, ssim = PUBLISHED_SET5[scale]
    assert (
        mean[0] == "mean"
        and float(mean[1]) == pytest.approx(psnr, abs=0.005)
        and float(mean[2]) == pytest.approx(ssim, abs=5e-5)
    )


def authors_layout(state):
    """Our state_dict in the authors' key names (the inverse of import_authors_keys), saved as DataParallel does."""
    inverse = {
        r"^head\.": "fea_conv.",
        r"^blocks\.(\d+)\.steps\.(\d)\.": lambda m: f"IMDB{int(m[1]) + 1}.c{int(m[2]) + 1}.",
        r"^blocks\.(\d+)\.last\.": lambda m: f"IMDB{int(m[1]) + 1}.c4.",
        r"^blocks\.(\d+)\.fuse\.": lambda m: f"IMDB{int(m[1]) + 1}.c5.",
        r"^blocks\.(\d+)\.attention\.squeeze\.": lambda m: f"IMDB{int(m[1]) + 1}.cca.conv_du.0.",
        r"^blocks\.(\d+)\.attention\.excite\.": lambda m: f"IMDB{int(m[1]) + 1}.cca.conv_du.2.",
        r"^fuse\.": "c.0.",
        r"^trunk_conv\.": "LR_conv.",
        r"^tail\.0\.": "upsampler.0.",
    }
    assert len(inverse) == len(_AUTHORS_RENAMES)
    renamed = {}
    for key, tensor in state.items():
        for pattern, replacement in inverse.items():
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                renamed["module." + new_key] = tensor
                break
        else:
            raise AssertionError(f"no authors' name for {key}")
    return renamed


@pytest.mark.parametrize(
    "scale,hyper",
    [
        (2, {"channels": 16, "num_blocks": 1}),
        (3, {"channels": 32, "num_blocks": 3}),
        (4, {"channels": 20, "num_blocks": 2}),
    ],
)
@pytest.mark.parametrize("layout", ["authors", "ours", "basicsr"])
def test_variants_are_recognised_from_their_tensors_alone(tmp_path, scale, hyper, layout):
    torch.manual_seed(0)
    model = create_model("imdn", scale=scale, **hyper).eval()
    state = model.state_dict()
    saved = {"authors": authors_layout(state), "ours": state, "basicsr": {"params_ema": state}}[layout]
    path = tmp_path / f"imdn_{layout}.pth"
    torch.save(saved, path)
    assert checkpoint_spec(path) == {"name": "imdn", "scale": scale, **hyper}
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        torch.testing.assert_close(load_model(path)(x), model(x), rtol=0, atol=0)


def test_a_flat_patch_trains_without_nan():
    """The contrast attention's square root has an infinite slope at zero variance (a flat patch)."""
    model = create_model("imdn", scale=2, channels=16, num_blocks=1)
    model(torch.full((2, 3, 8, 8), 0.5)).sum().backward()
    assert all(bool(torch.isfinite(p.grad).all()) for p in model.parameters())


def test_schema_refuses_what_the_blocks_cannot_split(tmp_path):
    with pytest.raises(ValueError, match="imdn channels must be a multiple of 4, got 18"):
        create_model("imdn", scale=4, channels=18)
    with pytest.raises(ValueError, match=r"imdn channels must be in 16\.\.1024, got 8"):
        create_model("imdn", scale=4, channels=8)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_trains_from_its_recipe_and_fine_tunes_from_the_authors_weights(tmp_path):
    from conftest import train_config_in_process

    from sr_models.registry import architecture
    from sr_models.weights import read_spec
    from train.config import load_recipe

    tiny = dict(
        model_overrides=architecture("imdn").tiny,
        lr_patch_size=8,
        batch_size=2,
        steps=2,
        progress=False,
        log_every=1,
        log_with="none",
        num_threads=1,
        repeat_images=True,
        num_workers=0,
        val_images=1,
    )
    run_dir = train_config_in_process(load_recipe("imdn_x4", **tiny, output_dir=str(tmp_path / "scratch")))
    assert read_spec(run_dir / "model.safetensors") == {"name": "imdn", "scale": 4, **architecture("imdn").tiny}
    if not SHARED.is_dir():
        pytest.skip("../shared/data is absent: the authors' weights are needed to fine-tune")
    tiny.pop("model_overrides")
    config = load_recipe(
        "imdn_x4", **tiny, output_dir=str(tmp_path / "fine"), init_weights=str(SHARED / "weights" / "IMDN_x4.pth")
    )
    run_dir = train_config_in_process(config)
    tuned = load_model(run_dir / "model.safetensors")
    authors = load_model(SHARED / "weights" / "IMDN_x4.pth")
    moved = max((tuned.state_dict()[k] - v).abs().max().item() for k, v in authors.state_dict().items())
    assert 0 < moved < 1e-2  # started from the authors' tensors, then two small steps


@needs_shared
def test_exports_to_fp32_fp16_and_int8_with_parity_and_upscales(tmp_path):
    """export() raises when its own parity fails (PSNR on real images against PyTorch; int8 within 0.3 dB)."""
    import numpy as np
    from PIL import Image

    from export.quantize import float_convs
    from export.to_onnx import export
    from export.upscale import main as upscale_main

    model = load_model(SHARED / "weights" / "IMDN_x4.pth")
    for precision in ("fp32", "fp16", "int8"):
        report = export(model, tmp_path / f"imdn_{precision}.onnx", precision=precision, progress=False)
        if precision == "int8":
            assert 0 < report["max_psnr_y_drop_db"] <= 0.3
            assert sorted(float_convs(tmp_path / "imdn_int8.onnx")) == ["/head/Conv", "/tail/tail.0/Conv"]
    source = tmp_path / "in"
    source.mkdir()
    Image.open(SHARED / "Set5" / "LR_bicubic" / "X4" / "birdx4.png").save(source / "bird.png")
    upscale_main([str(tmp_path / "imdn_fp32.onnx"), str(source), str(tmp_path / "out"), "--device", "cpu"])
    upscaled = np.asarray(Image.open(tmp_path / "out" / "bird.png"))
    with torch.no_grad():
        lr = torch.from_numpy(np.array(Image.open(source / "bird.png"))).permute(2, 0, 1)[None].float() / 255
        expected = (model(lr).clamp(0, 1) * 255).round()[0].permute(1, 2, 0).numpy()
    assert upscaled.shape == (288, 288, 3) and np.abs(upscaled.astype(float) - expected).max() <= 1


@needs_shared
@pytest.mark.parametrize("scale", [2, 3])
def test_int8_of_the_authors_x2_and_x3_weights_passes_parity(tmp_path, scale):
    from export.to_onnx import export

    model = load_model(SHARED / "weights" / f"IMDN_x{scale}.pth")
    report = export(model, tmp_path / "imdn_int8.onnx", precision="int8", progress=False)  # raises past 0.3 dB
    assert 0 < report["max_psnr_y_drop_db"] <= 0.3


def test_model_and_scale_given_still_read_the_widths_from_the_file(tmp_path):
    model = create_model("imdn", scale=4, channels=32, num_blocks=5).eval()
    torch.save(authors_layout(model.state_dict()), tmp_path / "imdn.pth")
    loaded = load_model(tmp_path / "imdn.pth", name="imdn", scale=4)
    assert loaded.spec == {"name": "imdn", "scale": 4, "channels": 32, "num_blocks": 5}
    with pytest.raises(ValueError, match="holds a imdn x4 model, but scale 3 was asked for"):
        load_model(tmp_path / "imdn.pth", name="imdn", scale=3)
    with pytest.raises(ValueError, match="unknown model 'foo'; valid models"):
        load_model(tmp_path / "imdn.pth", name="foo", scale=4)


def test_a_file_holding_two_architectures_is_said_to(tmp_path):
    both = {
        **authors_layout(create_model("imdn", scale=4, **_tiny("imdn")).state_dict()),
        **create_model("pan", scale=4, **_tiny("pan")).state_dict(),
    }
    torch.save(both, tmp_path / "both.pth")
    with pytest.raises(ValueError, match=r"fit more than one architecture \(pan, imdn\)"):
        checkpoint_spec(tmp_path / "both.pth")


def test_non_strict_init_weights_refuse_another_architecture(tmp_path):
    from sr_models import save_weights
    from train.init_weights import init_weights

    pan = create_model("pan", scale=4, channels=64)  # its head and trunk_conv have IMDN's names and shapes
    save_weights(pan, tmp_path / "pan.safetensors")
    torch.save(pan.state_dict(), tmp_path / "pan.pth")
    for path in (tmp_path / "pan.safetensors", tmp_path / "pan.pth"):
        with pytest.raises(ValueError, match="holds a pan model, not imdn"):
            init_weights(create_model("imdn", scale=4), path, strict=False)
    x4 = create_model("imdn", scale=4, **_tiny("imdn"))
    save_weights(x4, tmp_path / "imdn_x4.safetensors")
    summary = init_weights(
        create_model("imdn", scale=2, **_tiny("imdn")), tmp_path / "imdn_x4.safetensors", strict=False
    )
    assert summary["left_out"] and summary["fresh"] == ["tail.0.weight", "tail.0.bias"]  # another scale: the tail


def _tiny(name):
    from sr_models.registry import architecture

    return architecture(name).tiny
