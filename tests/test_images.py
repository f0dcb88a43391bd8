"""load_rgb / save_rgb / list_images on every kind of file a user may hand the toolkit, built here with Pillow."""

import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from conftest import REPO
from PIL import Image

from sr_models import images
from sr_models.files import OutputError
from sr_models.images import ImageError, list_images, load_rgb, save_rgb


def gray3(values):
    """A 2-D uint8 array replicated to the HxWx3 RGB that load_rgb returns for grayscale files."""
    return np.repeat(np.asarray(values, dtype=np.uint8)[:, :, None], 3, axis=2)


def opened(path):
    """What Pillow itself sees in a file (mode, info, format), with the file closed again."""
    with Image.open(path) as image:
        return image


def png_bytes(width, height, bit_depth, color_type, rows):
    """A minimal PNG written by hand, for what Pillow cannot write itself (48-bit RGB)."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + row for row in rows)  # filter type 0 per row
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


# --- every pixel format comes back as HxWx3 uint8 RGB ------------------------------------------------------


def test_rgb_png_round_trip(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 3), dtype=np.uint8)
    save_rgb(tmp_path / "a.png", rgb)
    out = load_rgb(tmp_path / "a.png")
    assert out.dtype == np.uint8 and out.flags.writeable
    np.testing.assert_array_equal(out, rgb)


def test_16_bit_grayscale_png_is_rounded_to_8_bit(tmp_path):
    # 128/257 = 0.498 -> 0 and 129/257 = 0.502 -> 1: rounding, not truncation (>> 8 would give 0 for both)
    values = np.array([[0, 128, 129, 257 * 100, 65535, 385, 386, 32896]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert opened(tmp_path / "g16.png").mode.startswith("I")  # it really is a 16-bit file
    np.testing.assert_array_equal(load_rgb(tmp_path / "g16.png"), gray3([[0, 0, 1, 100, 255, 1, 2, 128]]))


def test_48_bit_rgb_png_is_within_one_level(tmp_path):
    # Pillow itself decodes 16-bit-per-channel RGB to 8-bit by keeping the high byte; that is floor(v / 256),
    # at most one level below round(v / 257).
    values = np.array([[[0, 300, 65535], [40000, 32896, 1000]]], dtype=">u2")
    (tmp_path / "rgb48.png").write_bytes(png_bytes(2, 1, 16, 2, [values[0].tobytes()]))
    out = load_rgb(tmp_path / "rgb48.png").astype(int)
    assert out.shape == (1, 2, 3)
    assert np.abs(out - np.rint(values.astype(float) / 257)).max() <= 1


def test_palette_png_with_transparency_keeps_palette_colours(tmp_path):
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255]
    image = Image.fromarray(np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8), mode="P")
    image.putpalette(palette)
    image.save(tmp_path / "p.png", transparency=0)  # red is the transparent colour
    assert opened(tmp_path / "p.png").info.get("transparency") == 0
    expected = np.array(palette, dtype=np.uint8).reshape(3, 3)[[[0, 1, 2], [2, 1, 0]]]
    np.testing.assert_array_equal(load_rgb(tmp_path / "p.png"), expected)


def test_grayscale_is_replicated(tmp_path):
    gray = np.array([[0, 17, 200], [255, 3, 99]], dtype=np.uint8)
    Image.fromarray(gray, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "l.png"), gray3(gray))


def test_grayscale_alpha_drops_alpha(tmp_path):
    la = np.array([[[10, 0], [20, 255]], [[30, 128], [40, 7]]], dtype=np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "la.png"), gray3(la[:, :, 0]))


def test_rgba_drops_alpha_without_compositing(tmp_path):
    rgba = np.random.default_rng(1).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0  # fully transparent pixels keep their colour (compositing would make them black/white)
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(load_rgb(tmp_path / "rgba.png"), rgba[:, :, :3])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=100)  # pure red in ink
    assert opened(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = load_rgb(tmp_path / "cmyk.jpg").astype(int)
    assert out.shape == (16, 16, 3)
    assert np.abs(out - [255, 0, 0]).max() <= 3  # JPEG is lossy


def test_exif_orientation_is_applied(tmp_path):
    rgb = np.zeros((20, 40, 3), dtype=np.uint8)
    rgb[:, :20] = [255, 0, 0]  # left half red
    rgb[:, 20:] = [0, 0, 255]  # right half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: display after turning 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "rotated.jpg", exif=exif, quality=100)
    out = load_rgb(tmp_path / "rotated.jpg").astype(int)
    assert out.shape == (40, 20, 3)  # dimensions swapped
    assert np.abs(out[:16] - [255, 0, 0]).max() <= 8  # the left edge is now at the top
    assert np.abs(out[24:] - [0, 0, 255]).max() <= 8


def test_one_bit_image(tmp_path):
    bits = np.array([[1, 0, 1], [0, 0, 1]], dtype=bool)
    Image.fromarray(bits).save(tmp_path / "bits.png")
    assert opened(tmp_path / "bits.png").mode == "1"
    np.testing.assert_array_equal(load_rgb(tmp_path / "bits.png"), gray3(bits * 255))


def test_unicode_path_with_spaces(tmp_path):
    path = tmp_path / "dossier été" / "ümlaut ñ 图 1.png"
    rgb = np.full((3, 4, 3), 77, dtype=np.uint8)
    save_rgb(path, rgb)
    np.testing.assert_array_equal(load_rgb(path), rgb)
    assert list_images(path.parent) == [path]
    with pytest.raises(ImageError, match="图 2.png: no such file"):
        load_rgb(path.with_name("图 2.png"))


# --- unreadable files: one line naming the file and the problem ----------------------------------------------


def truncated_png(folder):
    path = folder / "cut.png"
    rgb = np.random.default_rng(2).integers(0, 256, (64, 64, 3), dtype=np.uint8)  # noise: barely compresses
    Image.fromarray(rgb).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def written(name, data):
    """A maker for the table below: writes `data` (bytes) under `name` in the test's folder."""

    def make(folder):
        (folder / name).write_bytes(data)
        return folder / name

    return make


def a_folder(folder):
    (folder / "folder.png").mkdir()
    return folder / "folder.png"


@pytest.mark.parametrize(
    "make, problem",
    [
        (lambda folder: folder / "missing.png", "no such file"),
        (written("empty.png", b""), "empty file"),
        (written("notes.png", b"not a picture\n"), "not an image"),
        (truncated_png, "truncated or corrupt"),
        (written("zero.png", png_bytes(0, 1, 8, 2, [b""])), "not an image"),  # Pillow refuses a zero width
        (a_folder, "is a folder"),
    ],
    ids=["missing", "zero-byte", "text", "truncated", "zero-width", "folder"],
)
def test_unreadable_files(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(ImageError) as caught:
        load_rgb(path)
    message = str(caught.value)
    assert path.name in message and problem in message
    assert "\n" not in message


@pytest.mark.parametrize("size", [(15, 10), (20, 20)], ids=["above-limit-warning", "twice-the-limit-error"])
def test_decompression_bomb_is_refused(tmp_path, monkeypatch, size):
    # Pillow warns above MAX_IMAGE_PIXELS (here 100) and raises above twice that: both must be our error.
    Image.new("RGB", size).save(tmp_path / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(ImageError, match=r"bomb\.png: too many pixels"):
        load_rgb(tmp_path / "bomb.png")


# --- save_rgb -------------------------------------------------------------------------------------------------


def test_save_creates_folders_and_leaves_no_partial_file(tmp_path):
    rgb = np.random.default_rng(3).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    target = tmp_path / "out" / "deeper" / "x.PNG"
    save_rgb(target, rgb)
    assert sorted(p.name for p in target.parent.iterdir()) == ["x.PNG"]
    np.testing.assert_array_equal(load_rgb(target), rgb)
    save_rgb(tmp_path / "x.jpg", rgb)
    assert opened(tmp_path / "x.jpg").format == "JPEG"


def test_failed_save_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "keep.png"
    old = np.zeros((4, 4, 3), dtype=np.uint8)
    save_rgb(target, old)

    def disk_full(self, fp, *args, **kwargs):
        with open(fp, "wb") as f:
            f.write(b"\x89PNG half")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", disk_full)
    with pytest.raises(OutputError, match="keep.png: cannot write"):
        save_rgb(target, np.ones((4, 4, 3), dtype=np.uint8))
    monkeypatch.undo()
    np.testing.assert_array_equal(load_rgb(target), old)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.png"]


def test_save_refuses_bad_arrays_and_suffixes(tmp_path):
    with pytest.raises(ImageError, match=r"a\.png: expected an HxWx3 uint8"):
        save_rgb(tmp_path / "a.png", np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(ImageError, match=r"a\.png: expected an HxWx3 uint8"):
        save_rgb(tmp_path / "a.png", np.zeros((3, 4, 4), dtype=np.uint8))
    with pytest.raises(ImageError, match=r"a\.gif: unknown image suffix"):
        save_rgb(tmp_path / "a.gif", np.zeros((4, 4, 3), dtype=np.uint8))
    assert list(tmp_path.iterdir()) == []


# --- list_images ----------------------------------------------------------------------------------------------


def test_list_images_sorts_and_filters(tmp_path):
    for name in ["b.PNG", "a.jpg", "c.JpEg", "d.webp", "e.tif", "notes.txt", "f.png.bak", ".hidden.png"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.png").write_bytes(b"x")  # not recursive
    (tmp_path / "dir.png").mkdir()  # a folder is not an image file
    assert [p.name for p in list_images(tmp_path)] == ["a.jpg", "b.PNG", "c.JpEg", "d.webp", "e.tif"]
    assert all(p.parent == tmp_path for p in list_images(str(tmp_path)))


def test_list_images_errors_name_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "texts").mkdir()
    (tmp_path / "texts" / "readme.md").write_text("hi")
    (tmp_path / "file.png").write_bytes(b"x")
    for folder, problem in [
        ("empty", "no image files"),
        ("texts", "no image files"),
        ("missing", "no such folder"),
        ("file.png", "not a folder"),
    ]:
        with pytest.raises(ImageError, match=f"{folder}: {problem}"):
            list_images(tmp_path / folder)


# --- no torch needed ------------------------------------------------------------------------------------------


def test_images_and_metrics_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"  # any `import torch` now raises ImportError
        "import sr_models.images, sr_models.evaluation.metrics\n"
        "assert sys.modules['torch'] is None\n"
        "print(sorted(sr_models.images.IMAGE_SUFFIXES)[0])"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ".bmp"


def test_suffixes_are_lowercase_with_dot():
    assert all(s.startswith(".") and s == s.lower() for s in images.IMAGE_SUFFIXES)
