"""The evaluation protocol, end to end: the PAN authors' published Set5 figures from their own weights."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from sr_models import create_model, save_weights
from sr_models.evaluation.samples import load_benchmark
from sr_models.evaluation.scoring import TorchUpscaler, score
from tests.conftest import REPO, SHARED, needs_shared
from train.evaluate import load_upscaler, main

SET5_HR = SHARED / "Set5" / "HR"
# docs/evaluation.md: PSNR_Y per image of the authors' x4 weights on the official LR files.
PAN_X4_PER_IMAGE = {"baby": 33.7761, "bird": 35.0000, "butterfly": 28.3496, "head": 32.9625, "woman": 30.5675}


def official(scale):
    weights = load_upscaler(SHARED / "weights" / f"PANx{scale}_DF2K.pth", model="pan", scale=scale)
    return weights, load_benchmark(SET5_HR, scale=scale, lr_dir=SHARED / "Set5" / "LR_bicubic" / f"X{scale}")


@needs_shared
def test_pan_x4_reproduces_the_authors_set5_log():
    report = score(*official(4), scale=4, progress=False)
    assert report["mean"]["psnr_y"] == pytest.approx(32.131149, abs=5e-4)
    assert report["mean"]["ssim_y"] == pytest.approx(0.894811, abs=5e-5)
    for row in report["images"]:
        assert row["psnr_y"] == pytest.approx(PAN_X4_PER_IMAGE[row["name"]], abs=5e-4), row["name"]
    # Bicubic: MATLAB bicubic x4 up from the same official LR.
    assert report["mean"]["bicubic_psnr_y"] == pytest.approx(28.429, abs=2e-3)
    assert report["mean"]["bicubic_ssim_y"] == pytest.approx(0.8111, abs=5e-5)


@needs_shared
@pytest.mark.parametrize("scale,psnr_y,ssim_y", [(2, 38.000670, 0.960488), (3, 34.400281, 0.927170)])
def test_pan_x2_x3_reproduce_the_authors_set5_logs(scale, psnr_y, ssim_y):
    report = score(*official(scale), scale=scale, progress=False)
    assert report["mean"]["psnr_y"] == pytest.approx(psnr_y, abs=5e-4)
    assert report["mean"]["ssim_y"] == pytest.approx(ssim_y, abs=5e-5)


@needs_shared
def test_lr_made_by_our_resize_gives_the_same_figure():
    upscaler, _ = official(4)
    report = score(upscaler, load_benchmark(SET5_HR, scale=4), scale=4, progress=False)
    assert report["mean"]["psnr_y"] == pytest.approx(32.131149, abs=2e-3)


@pytest.fixture
def odd_benchmark(tmp_path):
    """HR images of awkward sizes and modes: not a multiple of the scale, grayscale, RGBA."""
    rng = np.random.default_rng(0)
    hr = tmp_path / "HR"
    hr.mkdir()
    Image.fromarray(rng.integers(0, 256, (37, 50, 3), dtype=np.uint8)).save(hr / "rgb odd é.png")
    Image.fromarray(rng.integers(0, 256, (24, 24), dtype=np.uint8), mode="L").save(hr / "gray.png")
    Image.fromarray(rng.integers(0, 256, (30, 22, 4), dtype=np.uint8), mode="RGBA").save(hr / "alpha.png")
    return hr


@pytest.fixture
def tiny_weights(tmp_path):
    path = tmp_path / "tiny.safetensors"
    save_weights(create_model("pan", scale=2, channels=8, upsample_channels=8, num_blocks=1), path)
    return path


def test_cli_writes_the_documented_json(odd_benchmark, tiny_weights, tmp_path, capsys):
    main(
        [
            "--weights",
            str(tiny_weights),
            "--hr",
            str(odd_benchmark),
            "--json",
            str(tmp_path / "r.json"),
            "--device",
            "cpu",
        ]
    )
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["model"] == "pan" and report["scale"] == 2
    assert set(report["mean"]) >= {"psnr_y", "ssim_y", "psnr_rgb", "bicubic_psnr_y", "bicubic_ssim_y"}
    assert [row["name"] for row in report["images"]] == ["alpha", "gray", "rgb odd é"]
    for row in report["images"]:
        assert set(row) >= {"name", "psnr_y", "ssim_y", "bicubic_psnr_y"}
        assert all(np.isfinite(row[key]) for key in ("psnr_y", "ssim_y", "bicubic_psnr_y"))
    assert np.mean([row["psnr_y"] for row in report["images"]]) == pytest.approx(report["mean"]["psnr_y"])
    table = capsys.readouterr().out
    assert "rgb odd é" in table and "mean" in table


def test_hr_is_mod_cropped_to_scale_times_lr(odd_benchmark):
    for sample in load_benchmark(odd_benchmark, scale=2):
        assert sample.hr.shape == (sample.lr.shape[0] * 2, sample.lr.shape[1] * 2, 3)


def test_identity_upscaler_scores_infinite_psnr(odd_benchmark):
    class Oracle:  # returns the HR itself: the metric must see no error at all
        name, scale = "oracle", 2

        def __call__(self, lr):
            return next(s.hr for s in samples if s.lr is lr)

    samples = load_benchmark(odd_benchmark, scale=2)
    report = score(Oracle(), samples, scale=2, progress=False)
    assert report["mean"]["psnr_y"] == float("inf") and report["mean"]["ssim_y"] == pytest.approx(1.0)


def test_lr_of_the_wrong_size_is_named(odd_benchmark, tiny_weights, tmp_path):
    lr = tmp_path / "LR"
    lr.mkdir()
    for name in ("alpha", "gray", "rgb odd é"):
        Image.new("RGB", (5, 5)).save(lr / f"{name}x2.png")
    result = subprocess.run(
        [
            sys.executable,
            "train/evaluate.py",
            "--weights",
            str(tiny_weights),
            "--hr",
            str(odd_benchmark),
            "--lr",
            str(lr),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "alphax2.png: LR is 5x5, but alpha.png mod-cropped is 22x30" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_lr_file_is_named(odd_benchmark, tiny_weights, tmp_path):
    (tmp_path / "LR").mkdir()
    with pytest.raises(SystemExit, match="no LR image for 'alpha'"):
        main(["--weights", str(tiny_weights), "--hr", str(odd_benchmark), "--lr", str(tmp_path / "LR")])


def test_a_foreign_checkpoint_whose_tensors_cannot_tell_the_scale_asks_for_it(tmp_path):
    import torch

    torch.save(
        create_model("pan", scale=2, channels=8, upsample_channels=8, num_blocks=1).state_dict(), tmp_path / "x.pth"
    )
    with pytest.raises(
        SystemExit, match=r"x\.pth: a pan checkpoint of scale 2 or 3: their tensors are identical.*--scale"
    ):
        main(["--weights", str(tmp_path / "x.pth"), "--hr", str(tmp_path)])
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(SystemExit, match=r"empty\.pth: not a PyTorch checkpoint"):
        main(["--weights", str(tmp_path / "empty.pth"), "--hr", str(tmp_path)])


@needs_shared
def test_the_authors_pth_and_a_benchmark_root_need_no_flags(capsys):
    """`--weights PANx4_DF2K.pth --hr ../shared/data/Set5`: recognised as PAN x4, the root's official X4 LR used."""
    main(["--weights", str(SHARED / "weights" / "PANx4_DF2K.pth"), "--hr", str(SHARED / "Set5"), "--device", "cpu"])
    mean = capsys.readouterr().out.splitlines()[-1].split()
    assert mean[0] == "mean" and float(mean[1]) == pytest.approx(32.131149, abs=5e-4)


def test_torch_upscaler_matches_the_model_rounded(odd_benchmark):
    import torch

    model = create_model("srresnet", scale=2, channels=8, num_blocks=1).eval()
    lr = load_benchmark(odd_benchmark, scale=2)[0].lr
    expected = model(torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255)[0].permute(1, 2, 0)
    expected = (expected.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    np.testing.assert_array_equal(TorchUpscaler(model)(lr), expected)
