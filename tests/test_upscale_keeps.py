"""Issue 19, rule 2 through export/upscale.py: what 8-bit RGB does not hold is kept in the output or refused in
one line; the references are computed here, independently (Pillow's own bicubic on the alpha, ICC bytes)."""

import io
import struct

import numpy as np
import pytest
from PIL import Image, ImageCms

from export.runtime import OnnxUpscaler
from export.upscale import main

SCALE = 4


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    import torch

    from export.to_onnx import build_onnx
    from sr_models import create_model

    torch.manual_seed(0)
    model = create_model("pan", scale=SCALE, channels=8, upsample_channels=8, num_blocks=1).eval()
    path = tmp_path_factory.mktemp("model") / "tiny.onnx"
    build_onnx(model, path, precision="fp32")
    return path


def colour(seed=0, size=(20, 28)):
    return np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)


def bicubic(alpha):
    height, width = alpha.shape
    return np.asarray(Image.fromarray(alpha, "L").resize((width * SCALE, height * SCALE), Image.BICUBIC))


def upscale(onnx_model, source, target, *extra):
    main([str(onnx_model), str(source), str(target), "--device", "cpu", *extra])
    with Image.open(target) as image:
        image.load()
        return image.mode, np.array(image), image.info.get("icc_profile")


def refused(onnx_model, capsys, source, target, *extra):
    with pytest.raises(SystemExit) as stop:
        main([str(onnx_model), str(source), str(target), "--device", "cpu", *extra])
    message = str(stop.value.code)
    assert message.startswith("error: ") and "\n" not in message
    assert not target.exists()
    return message


def test_rgba_keeps_its_alpha_upscaled_beside_the_colour(onnx_model, tmp_path):
    rgb = colour()
    alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(tmp_path / "in.png")
    mode, out, _ = upscale(onnx_model, tmp_path / "in.png", tmp_path / "out.png")
    assert mode == "RGBA"
    assert np.array_equal(out[:, :, :3], OnnxUpscaler(onnx_model, device="cpu")(rgb))  # the colour as stored
    assert np.array_equal(out[:, :, 3], bicubic(alpha))


def test_palette_transparency_is_alpha_not_the_hidden_colour(onnx_model, tmp_path):
    palette_image = Image.fromarray(colour(2)).quantize(colors=8)
    hidden = int(np.asarray(palette_image)[0, 0])  # the index of the top-left pixel becomes transparent
    palette_image.save(tmp_path / "in.png", transparency=hidden)
    expected_alpha = np.where(np.asarray(palette_image) == hidden, 0, 255).astype(np.uint8)
    mode, out, _ = upscale(onnx_model, tmp_path / "in.png", tmp_path / "out.png")
    assert mode == "RGBA"
    assert np.array_equal(out[:, :, 3], bicubic(expected_alpha))
    assert out[0, 0, 3] == 0  # the transparent corner stays transparent


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
def test_gray_alpha_keeps_alpha(onnx_model, tmp_path, suffix):
    rgb = colour(3)
    alpha = np.random.default_rng(4).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").convert("LA").save(tmp_path / f"in{suffix}", lossless=True)
    with Image.open(tmp_path / f"in{suffix}") as image:
        assert image.mode in ("LA", "RGBA")  # WebP stores gray+alpha as RGBA
        stored_alpha = np.array(image.convert("RGBA"))[:, :, 3]
    out_mode, out, _ = upscale(onnx_model, tmp_path / f"in{suffix}", tmp_path / "out.tif")
    assert out_mode == "RGBA"
    assert np.array_equal(out[:, :, 3], bicubic(stored_alpha))


def test_an_rgb_icc_profile_is_carried_byte_for_byte(onnx_model, tmp_path):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for suffix in (".png", ".jpg", ".webp", ".tif"):
        Image.fromarray(colour(5)).save(tmp_path / f"in{suffix}", icc_profile=icc)
        _, _, carried = upscale(onnx_model, tmp_path / f"in{suffix}", tmp_path / f"out{suffix}")
        assert carried == icc, suffix


@pytest.mark.parametrize("suffix", [".jpg", ".bmp"])
def test_alpha_into_a_format_without_alpha_is_refused(onnx_model, tmp_path, capsys, suffix):
    Image.fromarray(np.dstack([colour(), np.full((20, 28), 9, np.uint8)]), "RGBA").save(tmp_path / "in.png")
    message = refused(onnx_model, capsys, tmp_path / "in.png", tmp_path / f"out{suffix}")
    assert "cannot hold the alpha channel" in message and "in.png" in message


def test_a_folder_run_refuses_before_the_first_image(onnx_model, tmp_path, capsys):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    Image.fromarray(colour()).save(folder / "a.jpg")
    Image.fromarray(np.dstack([colour(), np.full((20, 28), 9, np.uint8)]), "RGBA").save(folder / "b.png")
    Image.fromarray(colour()).convert("P").save(folder / "c.bmp")
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(colour()).save(folder / "d.jpg", icc_profile=icc)
    main([str(onnx_model), str(folder), str(out), "--device", "cpu"])  # every one of them keeps its format
    (folder / "e.bmp").write_bytes((folder / "b.png").read_bytes())  # RGBA PNG bytes, named .bmp
    with pytest.raises(SystemExit) as stop:
        main([str(onnx_model), str(folder), str(tmp_path / "out2"), "--device", "cpu"])
    assert "e.bmp" in str(stop.value.code) and "alpha" in str(stop.value.code)
    assert not (tmp_path / "out2").exists() or not any((tmp_path / "out2").iterdir())


def test_several_frames_are_refused(onnx_model, tmp_path, capsys):
    frames = [Image.fromarray(colour(i)) for i in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:], lossless=True)
    for name in ("anim.png", "pages.tif", "anim.webp"):
        message = refused(onnx_model, capsys, tmp_path / name, tmp_path / f"out-{name}.png")
        assert name in message and "3 frames" in message


def test_sixteen_bit_is_rounded_and_said(onnx_model, tmp_path, capsys):
    gray = np.random.default_rng(6).integers(0, 65536, (20, 28)).astype(np.uint16)
    Image.frombytes("I;16", gray.shape[::-1], gray.astype("<u2").tobytes()).save(tmp_path / "in.png")
    _, out, _ = upscale(onnx_model, tmp_path / "in.png", tmp_path / "out.png")
    expected = np.repeat(np.rint(gray / 257).astype(np.uint8)[:, :, None], 3, axis=2)
    assert np.array_equal(out, OnnxUpscaler(onnx_model, device="cpu")(expected))
    assert "16-bit: reduced to 8 bits" in capsys.readouterr().err


def test_a_decompression_bomb_is_refused_from_its_header_with_the_size_and_the_option(
    onnx_model, tmp_path, capsys, monkeypatch
):
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    side = 9400  # under Pillow's MAX_IMAGE_PIXELS, so its own check lets it through
    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(b"\0" * (side * 3 + 1)) for _ in range(side)) + rows.flush()
    (tmp_path / "bomb.png").write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", data)
        + chunk(b"IEND", b"")
    )
    assert (tmp_path / "bomb.png").stat().st_size < 400_000

    def no_decoding(self, *args):
        raise AssertionError("decoded before the memory check")

    monkeypatch.setattr(Image.Image, "load", no_decoding)
    message = refused(onnx_model, capsys, tmp_path / "bomb.png", tmp_path / "out.png")
    assert "bomb.png" in message and "37600x37600" in message and "GiB" in message and "--max-memory" in message
    whole = refused(onnx_model, capsys, tmp_path / "bomb.png", tmp_path / "out.png", "--tile", "0")
    assert "--tile" in whole


def test_a_bmp_header_bomb_is_refused_before_decoding(onnx_model, tmp_path, capsys, monkeypatch):
    import struct

    width = height = 7000
    header = struct.pack("<2sIHHI", b"BM", 54 + width * height * 3, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, width * height * 3, 2835, 2835, 0, 0)
    (tmp_path / "bomb.bmp").write_bytes(header + info + b"\0" * 64)  # 118 bytes claiming 49 megapixels
    monkeypatch.setattr(Image.Image, "load", lambda self, *a: (_ for _ in ()).throw(AssertionError("decoded")))
    message = refused(onnx_model, capsys, tmp_path / "bomb.bmp", tmp_path / "out.png", "--max-memory", "512M")
    assert "bomb.bmp" in message and "--max-memory" in message


def test_max_memory_is_parsed_and_checked():
    from sr_models.image_memory import parse_memory

    assert parse_memory("8G") == 8 * 2**30 and parse_memory("512MiB") == 512 * 2**20 and parse_memory("100") == 100
    for bad in ("lots", "-1G", "0", "nanG"):
        with pytest.raises(ValueError, match="--max-memory"):
            parse_memory(bad)


def test_a_profile_that_can_be_neither_carried_nor_applied_is_refused(onnx_model, tmp_path, capsys):
    lab = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(colour(7)).save(tmp_path / "in.png", icc_profile=lab)
    message = refused(onnx_model, capsys, tmp_path / "in.png", tmp_path / "out.png")
    assert "in.png" in message and "'Lab' colour space" in message


def test_an_rgb_profile_into_bmp_is_refused(onnx_model, tmp_path, capsys):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(colour(8)).save(tmp_path / "in.png", icc_profile=icc)
    message = refused(onnx_model, capsys, tmp_path / "in.png", tmp_path / "out.bmp")
    assert "cannot hold the ICC profile" in message


def s15(x):
    return struct.pack(">i", round(x * 65536))


def gray_profile(gamma=2.2):
    """A minimal ICC v2 display profile for the GRAY colour space: white point and one gamma curve."""
    wtpt = b"XYZ " + b"\0" * 4 + s15(0.9642) + s15(1.0) + s15(0.8249)
    ktrc = b"curv" + b"\0" * 4 + struct.pack(">IH", 1, round(gamma * 256)) + b"\0\0"
    desc_text = b"gray\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(desc_text)) + desc_text + b"\0" * 8 + b"\0" * 3 + b"\0" * 67
    desc += b"\0" * (-len(desc) % 4)
    tags = [(b"desc", desc), (b"wtpt", wtpt), (b"kTRC", ktrc)]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + b"\0" * (-len(body) % 4)
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + b"lcms"
        + bytes([2, 0x10, 0, 0])
        + b"mntr"
        + b"GRAY"
        + b"XYZ "
        + b"\0" * 12
        + b"acsp"
        + b"\0" * 4
        + b"\0" * 4
        + b"\0" * 8
        + b"\0" * 8
        + b"\0" * 4
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + b"\0" * 4
        + b"\0" * 16
        + b"\0" * 28
    )
    assert len(header) == 128, len(header)
    return header + struct.pack(">I", len(tags)) + table + data


def test_a_gray_profile_is_applied_giving_srgb(onnx_model, tmp_path, capsys):
    """A profile that cannot describe an RGB output is applied (LittleCMS), never carried nor dropped unsaid."""
    profile = gray_profile(gamma=1.0)  # linear gray: sRGB's curve makes every mid-tone brighter
    gray = np.random.default_rng(9).integers(0, 256, (20, 28), dtype=np.uint8)
    alpha = np.random.default_rng(10).integers(0, 256, (20, 28), dtype=np.uint8)
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(tmp_path / "in.png", icc_profile=profile)
    reference = np.array(
        ImageCms.profileToProfile(
            Image.fromarray(gray, "L"),
            ImageCms.ImageCmsProfile(io.BytesIO(profile)),
            ImageCms.createProfile("sRGB"),
            outputMode="RGB",
        )
    )
    assert not np.array_equal(reference[:, :, 0], gray)
    mode, out, carried = upscale(onnx_model, tmp_path / "in.png", tmp_path / "out.png")
    assert mode == "RGBA" and carried is None
    assert np.array_equal(out[:, :, :3], OnnxUpscaler(onnx_model, device="cpu")(reference))
    assert np.array_equal(out[:, :, 3], bicubic(alpha))
    assert "ICC profile was applied" in capsys.readouterr().err


def test_a_gray_profile_on_16_bit_gray_is_applied_to_its_8_bit_values(onnx_model, tmp_path, capsys):
    """16-bit gray is reduced to 8 bits first (65535 -> 255), then the profile goes on those values: applied to
    Pillow's own 8-bit view of the raw pixels, it once made every pixel white."""
    profile = gray_profile(gamma=1.0)
    values = np.random.default_rng(11).integers(0, 65536, (20, 28), dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "in.png", icc_profile=profile)
    assert Image.open(tmp_path / "in.png").mode.startswith("I")
    gray = np.rint(values / 257).astype(np.uint8)
    reference = np.array(
        ImageCms.profileToProfile(
            Image.fromarray(gray, "L"),
            ImageCms.ImageCmsProfile(io.BytesIO(profile)),
            ImageCms.createProfile("sRGB"),
            outputMode="RGB",
        )
    )
    mode, out, carried = upscale(onnx_model, tmp_path / "in.png", tmp_path / "out.png")
    assert mode == "RGB" and carried is None
    assert np.array_equal(out, OnnxUpscaler(onnx_model, device="cpu")(reference))
    assert "ICC profile was applied" in capsys.readouterr().err


def test_a_gray_profile_on_colour_pixels_is_refused_not_turned_gray(onnx_model, tmp_path, capsys):
    Image.fromarray(colour(8)).save(tmp_path / "in.png", icc_profile=gray_profile())
    message = refused(onnx_model, capsys, tmp_path / "in.png", tmp_path / "out.png")
    assert "'GRAY' colour space" in message and "RGB pixels" in message
