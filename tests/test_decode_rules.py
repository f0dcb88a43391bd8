"""Issue 19, rule 2 "decode only what is meant" and the image half of rule 4, through training, evaluation and the
opener itself: one opener with an explicit list of formats, the same rule for every kind of content."""

import re
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image, ImageCms

from sr_models.evaluation.samples import load_benchmark
from sr_models.images import ACCEPTED_FORMATS, ImageError, decode_image, load_rgb, read_header
from train.data.pairs import ImagePairs, decode
from train.data.sources import load_source

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("sr_models", "train", "export")


def test_only_the_opener_calls_image_open():
    """Every image of every command opens through sr_models.images.open_image (explicit formats)."""
    callers = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            for line in path.read_text().splitlines():
                if re.search(r"\bImage\.open\(|from PIL\.Image import .*\bopen\b", line):
                    callers.append(str(path.relative_to(REPO)))
    assert callers == ["sr_models/images.py"], callers  # one call, in open_image
    assert "Image.open(stream, formats=ACCEPTED_FORMATS)" in (REPO / "sr_models/images.py").read_text()


def eps(path):
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path, format="EPS")
    return path


def refused_line(call, name):
    with pytest.raises(ImageError) as caught:
        call()
    message = str(caught.value)
    assert name in message and "EPS" in message and "\n" not in message
    return message


@pytest.mark.parametrize(
    "maker, kind",
    [
        (eps, "PostScript/EPS"),
        (lambda p: (p.write_bytes(b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n"), p)[1], "PDF"),
        (lambda p: (Image.new("RGB", (8, 8)).save(p, format="GIF"), p)[1], "GIF"),
    ],
)
def test_other_formats_under_an_image_name_are_refused_and_never_decoded(tmp_path, monkeypatch, maker, kind):
    path = maker(tmp_path / "cat.png")
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: (_ for _ in ()).throw(AssertionError("decoded")))
    with pytest.raises(ImageError, match=rf"cat\.png: a {kind}"):
        read_header(path, name=str(path))
    assert set(ACCEPTED_FORMATS) == {"PNG", "JPEG", "BMP", "TIFF", "WEBP"}


def test_eps_named_png_is_refused_by_training_and_evaluation(tmp_path):
    folder = tmp_path / "hr"
    folder.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(folder / "good.png")
    eps(folder / "cat.png")
    refused_line(lambda: load_benchmark(folder, scale=4), "cat.png")  # evaluation and validation
    pairs = ImagePairs(load_source(str(folder), split="train", cache_dir=str(tmp_path / "cache")), scale=4)
    index = [pairs.name(i) for i in range(len(pairs))].index(str(folder / "cat.png"))
    refused_line(lambda: pairs.lr_size(index), "cat.png")  # training's header check
    refused_line(lambda: pairs.load(index), "cat.png")  # and its decode


def test_a_datasets_image_column_is_kept_undecoded_and_decoded_by_our_opener(tmp_path):
    """A saved data set whose Image feature decodes (decode=True) with Pillow on its own: cast to decode=False."""
    eps_bytes = eps(tmp_path / "x.eps").read_bytes()
    good = tmp_path / "good.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(good)
    table = datasets.Dataset.from_dict(
        {"image": [{"bytes": good.read_bytes(), "path": None}, {"bytes": eps_bytes, "path": None}]},
        features=datasets.Features({"image": datasets.Image()}),
    )
    table.save_to_disk(str(tmp_path / "saved"))
    loaded = load_source(str(tmp_path / "saved"), split="train")
    assert loaded.features["hr"].decode is False
    pairs = ImagePairs(loaded, scale=4)
    assert pairs.load(0)[0].shape == (32, 32, 3)
    with pytest.raises(ImageError, match="EPS"):
        pairs.load(1)
    with pytest.raises(ImageError, match="EPS"):
        decode({"bytes": eps_bytes, "path": None}, name="row 1")


def adobe_rgb():
    """The Adobe RGB (1998) profile of scikit-image's rocket.jpg: an RGB profile that is not sRGB."""
    from sr_models.builtin import builtin_folder

    icc = read_header(builtin_folder() / "rocket.jpg", name="rocket.jpg").icc
    assert ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(__import__("io").BytesIO(icc))).startswith("Adobe")
    return icc


def rgb48_png(rgb):
    """A 48-bit RGB PNG (Pillow decodes it as mode RGB, keeping the high byte, and cannot write one)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    height, width, _ = rgb.shape
    wide = rgb.astype(">u2") * 257
    raw = b"".join(b"\0" + wide[row].tobytes() for row in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def odd_folder(folder):
    """One file of each kind 8-bit RGB does not hold, plus a plain one."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "plain.png")
    Image.fromarray(np.dstack([rgb, rng.integers(0, 256, (32, 32), dtype=np.uint8)]), "RGBA").save(folder / "a.png")
    Image.fromarray(rgb).quantize(colors=8).save(folder / "p.png", transparency=0)
    gray = rng.integers(0, 65536, (32, 32)).astype(np.uint16)
    Image.frombytes("I;16", (32, 32), gray.astype("<u2").tobytes()).save(folder / "deep.png")
    (folder / "rgb48.png").write_bytes(rgb48_png(rgb))
    Image.fromarray(rgb).save(folder / "icc.jpg", icc_profile=adobe_rgb(), quality=95)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(rgb).save(folder / "srgb.png", icc_profile=srgb)  # sRGB: what untagged pixels are; not said
    Image.fromarray(rgb).save(folder / "anim.png", save_all=True, append_images=[Image.fromarray(255 - rgb)])
    return folder, rgb


EXPECTED_LINES = {
    "have alpha": 2,
    "are 16-bit: reduced to 8 bits": 2,
    "ICC profile other than sRGB": 1,
    "several frames": 1,
}


def check_warnings(err):
    lines = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(lines) == len(EXPECTED_LINES), lines
    for phrase, count in EXPECTED_LINES.items():
        assert sum(phrase in line and f" {count} file(s) " in line for line in lines) == 1, (phrase, lines)


def test_evaluation_says_each_kind_once_and_uses_the_stored_colour(tmp_path, capsys):
    folder, rgb = odd_folder(tmp_path / "hr")
    samples = {sample.name: sample for sample in load_benchmark(folder, scale=4)}
    check_warnings(capsys.readouterr().err)
    assert np.array_equal(samples["a"].hr, rgb) and np.array_equal(samples["anim"].hr, rgb)  # colour, first frame
    assert np.array_equal(samples["rgb48"].hr, rgb)  # the high byte of v * 257 is v


def test_training_says_each_kind_once(tmp_path, capsys):
    folder, _ = odd_folder(tmp_path / "hr")
    pairs = ImagePairs(load_source(str(folder), split="train", cache_dir=str(tmp_path / "cache")), scale=4)
    check_warnings(capsys.readouterr().err)
    assert len(pairs) == 8


def test_training_and_upscale_read_the_same_colour(tmp_path):
    """The same rule everywhere: load_rgb (training, evaluation) is decode_image's colour (upscale's input)."""
    folder, _ = odd_folder(tmp_path / "hr")
    for path in sorted(folder.iterdir()):
        picture = decode_image(path, name=str(path), apply_icc=True)
        assert np.array_equal(load_rgb(path), picture.rgb), path.name  # sRGB profile: carried, not applied


def test_decoded_memory_is_bounded_from_the_header(tmp_path, monkeypatch):
    Image.new("RGB", (2000, 2000)).save(tmp_path / "big.tif")
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: (_ for _ in ()).throw(AssertionError("decoded")))
    with pytest.raises(ImageError, match=r"big\.tif: decoding this 2000x2000 RGB image needs about .*--max-memory"):
        read_header(tmp_path / "big.tif", name=str(tmp_path / "big.tif"), max_memory=2**20)


def test_evaluate_refuses_what_does_not_fit_before_running_the_model(tmp_path):
    from train.evaluate import main

    folder = tmp_path / "hr"
    folder.mkdir()
    Image.new("RGB", (256, 256)).save(folder / "wide.png")
    weights = tmp_path / "tiny.safetensors"
    import torch

    from sr_models import create_model
    from sr_models.weights import save_weights

    torch.manual_seed(0)
    save_weights(create_model("pan", scale=4, channels=8, upsample_channels=8, num_blocks=1), weights)
    with pytest.raises(SystemExit) as stop:
        main(["--weights", str(weights), "--hr", str(folder), "--device", "cpu", "--max-memory", "8M"])
    message = str(stop.value.code)
    assert message.startswith(f"error: {folder / 'wide.png'}: evaluating this 256x256 image")
    assert "--max-memory 8.0 MiB" in message
