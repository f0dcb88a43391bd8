"""The files the suite feeds the commands: odd and bad images, weights, ONNX models, recipes, stores.

Each image maker writes a file and returns the RGB uint8 array a reader must produce from it (None for files
that must be refused). tests/test_faults.py decodes the same files in-process, so the suite and the tests exercise
the same bytes. The other makers write one file (or edit one) and return what a case needs to know of it.
"""

import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

from bench.faults.commands import SCALE, TINY_MODEL
from sr_models.images import save_rgb

# ---------------------------------------------------------------------------------------------------------------
# Images. The bad (and odd but valid) files.


def base_image(height=96, width=96, seed=0):
    """Smooth-ish content (8x8 blocks), so the bicubic baseline and a tiny model give finite PSNR."""
    small = np.random.default_rng(seed).integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))


def png_bytes(array, **kwargs):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", **kwargs)
    return buffer.getvalue()


def make_truncated(path):
    path.write_bytes(png_bytes(base_image(seed=11))[:-300])  # the header survives, the pixels do not


def make_zero_byte(path):
    path.write_bytes(b"")


def make_text(path):
    path.write_text("this is not an image, whatever its name says\n")


def make_sixteen_bit(path):
    gray = base_image(seed=12)[:, :, 0].astype(np.uint16) * 257  # full 16-bit range
    Image.frombytes("I;16", gray.shape[::-1], gray.astype("<u2").tobytes()).save(path)
    expected = np.rint(gray / 257).astype(np.uint8)
    return np.repeat(expected[:, :, None], 3, axis=2)


def make_palette(path):
    image = Image.fromarray(base_image(seed=13)).quantize(colors=16)
    image.save(path)
    return np.array(image.convert("RGB"))


def make_gray(path):
    gray = base_image(seed=14)[:, :, 0]
    Image.fromarray(gray, mode="L").save(path)
    return np.repeat(gray[:, :, None], 3, axis=2)


def make_rgba(path):
    rgb = base_image(seed=15)
    alpha = np.full(rgb.shape[:2] + (1,), 128, dtype=np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], axis=2), mode="RGBA").save(path)
    return rgb  # alpha dropped, not composited (cv2.IMREAD_COLOR)


def make_cmyk(path):
    rgb = base_image(seed=16)
    Image.fromarray(rgb).convert("CMYK").save(path, quality=95)
    with Image.open(path) as image:  # JPEG is lossy: the reference is the decoded file, converted by Pillow
        assert image.mode == "CMYK"
        return np.array(image.convert("RGB"))


def make_exif_rotated(path):
    """A 96x128 (h x w) picture stored sideways with orientation 6 ("rotate 90 degrees clockwise to view")."""
    upright = base_image(96, 128, seed=17)
    stored = Image.fromarray(np.rot90(upright, 1))  # counter-clockwise: the viewer turns it back clockwise
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)
    with Image.open(path) as image:  # the stored pixels, decoded, turned upright by hand (lossy: not `upright`)
        return np.ascontiguousarray(np.rot90(np.array(image.convert("RGB")), -1))


def make_float_tiff(path):
    """32-bit float pixels in 0-1 (mode F): no defined 8-bit mapping; Pillow alone would read it as black."""
    Image.fromarray((base_image(seed=12)[:, :, 0] / 255).astype(np.float32), mode="F").save(path)


def make_lab_tiff(path):
    """CIELAB pixels: Pillow's conversion would copy L, a, b into R, G, B."""
    Image.new("LAB", (96, 96), (60, 20, -20)).save(path)


def make_int32_tiff(path):
    """32-bit integer pixels beyond the 16-bit range (mode I)."""
    Image.fromarray(base_image(seed=14)[:, :, 0].astype(np.int32) * 1000, mode="I").save(path)


def make_small(path):
    save_rgb(path, base_image(16, 16, seed=18))  # LR 4x4 at x4 < the 8x8 LR patch


def make_one_pixel(path):
    save_rgb(path, np.full((1, 1, 3), 200, dtype=np.uint8))


def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def make_bomb(path):
    """A 100 KB-free PNG whose header claims 30000 x 30000 pixels: Pillow's bomb check must refuse it."""
    header = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 1024)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


# name -> (maker, suffix, refused?): refused files must stop the command with a line naming them.
FILES = {
    "truncated PNG": (make_truncated, ".png", True),
    "zero-byte file": (make_zero_byte, ".png", True),
    "text file named .png": (make_text, ".png", True),
    "decompression bomb (30000x30000 PNG header)": (make_bomb, ".png", True),
    "16-bit PNG": (make_sixteen_bit, ".png", False),
    "palette PNG": (make_palette, ".png", False),
    "grayscale PNG": (make_gray, ".png", False),
    "RGBA PNG": (make_rgba, ".png", False),
    "CMYK JPEG": (make_cmyk, ".jpg", False),
    "EXIF-rotated JPEG": (make_exif_rotated, ".jpg", False),
    "32-bit float TIFF (values 0-1)": (make_float_tiff, ".tif", True),
    "CIELAB TIFF": (make_lab_tiff, ".tif", True),
    "32-bit integer TIFF (beyond 16 bits)": (make_int32_tiff, ".tif", True),
}


# Decoding on purpose (docs/reliability.md, rule 2): formats the opener refuses, alpha kept, bombs within limits.


def make_eps(path):
    Image.new("RGB", (16, 16), (10, 20, 30)).save(path, format="EPS")  # Pillow writes EPS without Ghostscript


def make_gif(path):
    frames = [Image.fromarray(base_image(seed=40)), Image.fromarray(base_image(seed=41))]
    frames[0].save(path, format="GIF", save_all=True, append_images=frames[1:])


def make_pdf(path):
    Image.fromarray(base_image(seed=42)).save(path, format="PDF")


# Files of formats the opener does not accept, under an image name: (maker, file name).
DECODE_REFUSED = {
    "EPS file named .png": (make_eps, "cat.png"),
    "animated GIF named .png": (make_gif, "anim.png"),
    "PDF file named .tif": (make_pdf, "page.tif"),
}


def make_rgba_alpha(path):
    rgb = base_image(32, 40, seed=43)
    alpha = np.random.default_rng(44).integers(0, 256, rgb.shape[:2], dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), "RGBA").save(path)
    return rgb, alpha


def make_trns_palette(path):
    image = Image.fromarray(base_image(32, 40, seed=45)).quantize(colors=16)
    hidden = int(np.asarray(image)[0, 0])
    image.save(path, transparency=hidden)
    return np.array(image.convert("RGB")), np.where(np.asarray(image) == hidden, 0, 255).astype(np.uint8)


def make_la(path):
    gray = base_image(32, 40, seed=46)[:, :, 0]
    alpha = np.random.default_rng(47).integers(0, 256, gray.shape, dtype=np.uint8)
    Image.fromarray(np.dstack([gray, alpha]), "LA").save(path)
    return np.repeat(gray[:, :, None], 3, axis=2), alpha


# Images with alpha that upscale keeps: maker -> (stored colour, alpha).
DECODE_ALPHA = {"RGBA PNG": make_rgba_alpha, "palette PNG with tRNS": make_trns_palette, "LA PNG": make_la}


def adobe_rgb_profile():
    """The Adobe RGB (1998) ICC profile of scikit-image's rocket.jpg: an RGB profile other than sRGB."""
    from sr_models.builtin import builtin_folder

    with Image.open(builtin_folder() / "rocket.jpg") as image:
        return image.info["icc_profile"]


def make_png_bomb(path, side=9400):
    """A PNG of about 260 KB that decodes to side x side RGB: under Pillow's own MAX_IMAGE_PIXELS."""
    rows = zlib.compressobj(9)
    data = b"".join(rows.compress(b"\0" * (side * 3 + 1)) for _ in range(side)) + rows.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b""))


def make_bmp_bomb(path, side=7000):
    """A 118-byte BMP whose header claims side x side 24-bit pixels."""
    header = struct.pack("<2sIHHI", b"BM", 54 + side * side * 3, 0, 0, 54)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, side * side * 3, 2835, 2835, 0, 0)
    path.write_bytes(header + info + b"\0" * 64)


def make_photos(folder, seeds=(0, 1, 2), name="good{seed}.png"):
    """A folder of good images (base_image of each seed)."""
    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        save_rgb(folder / name.format(seed=seed), base_image(seed=seed))
    return folder


def make_mismatched_pair(root):
    """A benchmark folder HR/ + LR_bicubic/X4/ whose second LR image is 24x32, not 96/4: (HR, LR, that file)."""
    hr_dir, lr_dir = root / "HR", root / "LR_bicubic" / f"X{SCALE}"
    hr_dir.mkdir(parents=True)
    lr_dir.mkdir(parents=True)
    for seed in range(2):
        save_rgb(hr_dir / f"im{seed}.png", base_image(seed=seed))
        save_rgb(lr_dir / f"im{seed}x{SCALE}.png", base_image(24, 24, seed=seed))
    save_rgb(lr_dir / f"im1x{SCALE}.png", base_image(32, 24, seed=1))  # 24 wide, 32 high: not 96/4
    return hr_dir, lr_dir, lr_dir / f"im1x{SCALE}.png"


def make_glob_pairs(root):
    """HR/img[1].png beside LR/img1x4.png, another image's LR: a glob would pair them."""
    (root / "HR").mkdir(parents=True)
    (root / "LR").mkdir()
    save_rgb(root / "HR" / "img[1].png", base_image(seed=30))
    save_rgb(root / "LR" / f"img1x{SCALE}.png", base_image(24, 24, seed=31))
    return root / "HR", root / "LR"


def add_other_programs_files(folder):
    """What other programs leave in a photo folder: a datasets metadata.jsonl listing 1 image, a metadata.csv,
    Thumbs.db, .DS_Store, __MACOSX/ and an .xmp sidecar."""
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "good0.png", "text": "x"}) + "\n")
    (folder / "metadata.csv").write_text("file_name,label\ngood1.png,cat\n")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "__MACOSX").mkdir()
    (folder / "__MACOSX" / "._good0.png").write_bytes(b"\0\5\26\7")
    (folder / "good0.xmp").write_text("<x:xmpmeta/>")


def flip_byte(path, index, mask):
    """One byte of `path` (an index into its bytes) xor `mask`."""
    data = bytearray(path.read_bytes())
    data[index] ^= mask
    path.write_bytes(bytes(data))


# ---------------------------------------------------------------------------------------------------------------
# Recipes


def make_yaml_bomb(path):
    """A billion-laughs recipe: nested aliases, 10^9 items once expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path.write_text("\n".join(lines) + "\n")


def make_deep_yaml(path, depth):
    path.write_text("steps: " + "[" * depth + "]" * depth + "\n")


# ---------------------------------------------------------------------------------------------------------------
# Weights


def make_tiny_model(root):
    """The suite's tiny PAN (seed 0) as safetensors and as fp32 ONNX: (weights, onnx)."""
    import torch

    from export.to_onnx import build_onnx
    from sr_models import create_model
    from sr_models.weights import save_weights

    torch.manual_seed(0)
    model = create_model("pan", scale=SCALE, **TINY_MODEL).eval()
    weights = root / "tiny.safetensors"
    save_weights(model, weights)
    onnx_path = root / "tiny.onnx"
    build_onnx(model, onnx_path, precision="fp32")
    return weights, onnx_path


def tiny_state(weights):
    """The tiny model's state dict, tensors copied (to edit)."""
    from sr_models.weights import load_model

    return {k: v.clone().contiguous() for k, v in load_model(weights).state_dict().items()}


BAD_WEIGHTS = {
    "blocks": "metadata claiming 10^8 blocks",
    "odd": "metadata: PAN channels odd",
    "scale": "metadata: scale the model lacks (x5)",
    "nan": "NaN in a weight tensor",
    "damaged": "one flipped byte in the tensor data",
    "int": "integer weight tensor",
}


def make_bad_weights(path, weights, kind):
    """Our safetensors (the tiny model's tensors) with metadata or tensors that must be refused: BAD_WEIGHTS."""
    import torch
    from safetensors.torch import save_file

    from sr_models.weights import tensors_digest

    tensors = tiny_state(weights)
    hyper = dict(TINY_MODEL)
    scale = str(SCALE)
    if kind == "blocks":
        hyper["num_blocks"] = 10**8
    elif kind == "odd":
        hyper["channels"] = 7
    elif kind == "scale":
        scale = "5"
    elif kind == "nan":
        tensors["tail.bias"][0] = float("nan")
    elif kind == "int":
        tensors["head.weight"] = tensors["head.weight"].to(torch.int64)
    metadata = {
        "format": "sr-toolkit/1",
        "model": "pan",
        "scale": scale,
        "hyperparameters": json.dumps(hyper),
        "sha256": tensors_digest(tensors),
    }
    save_file(tensors, str(path), metadata=metadata)
    if kind == "damaged":
        flip_byte(path, -5, 0x20)


def make_deep_json_weights(path):
    """A safetensors file whose hyperparameters metadata is JSON nested 100000 deep."""
    import torch
    from safetensors.torch import save_file

    save_file(
        {"w": torch.zeros(1)},
        str(path),
        metadata={
            "format": "sr-toolkit/1",
            "model": "pan",
            "scale": "4",
            "hyperparameters": "[" * 100000 + "]" * 100000,
        },
    )


def make_damaged_zip_pth(path, weights):
    """The tiny model as a zip .pth, one byte of its largest tensor flipped: it fails its CRC."""
    import zipfile

    import torch

    from sr_models.weights import load_model

    torch.save(load_model(weights).state_dict(), path)
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    data = path.read_bytes()
    name_length = int.from_bytes(data[member.header_offset + 26 : member.header_offset + 28], "little")
    extra_length = int.from_bytes(data[member.header_offset + 28 : member.header_offset + 30], "little")
    flip_byte(path, member.header_offset + 30 + name_length + extra_length + 4, 0x20)


def make_bad_init_weights(path, weights, kind):
    """A BasicSR-style .pth ({"params_ema": ...}, unwrapped and checked alike) holding NaN or an int32 tensor."""
    import torch

    state = tiny_state(weights)
    if kind == "nan":
        state["tail.weight"][0, 0, 0, 0] = float("nan")
    else:
        state["head.weight"] = state["head.weight"].to(torch.int32)
    torch.save({"params_ema": state}, path)


def make_int_keys_pth(path, weights):
    """A .pth whose state_dict has a non-string key (7) beside the tiny model's."""
    import torch

    torch.save({**tiny_state(weights), 7: torch.zeros(1)}, path)


def make_stand_in_metric_weights(path):
    """A file under a metric network's published name whose content is not that network (a wrong hash)."""
    import torch

    torch.save({"stand-in": torch.zeros(4)}, path)


# ---------------------------------------------------------------------------------------------------------------
# ONNX models


def make_mislabelled_onnx(path, onnx_path, claimed):
    """A copy of the tiny x4 model whose metadata says scale `claimed`."""
    import onnx

    from export.convert import set_metadata

    path.write_bytes(onnx.load(str(onnx_path)).SerializeToString())
    set_metadata(path, {"model": "pan", "scale": claimed})


def make_static_onnx(path):
    """A tiny PAN exported for 16x16 inputs only (no dynamic axes)."""
    import torch

    from sr_models import create_model

    model = create_model("pan", scale=SCALE, **TINY_MODEL).eval()
    torch.onnx.export(
        model, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, input_names=["lr"], output_names=["sr"]
    )


def make_wild_onnx(path):
    """A model whose output explodes (x 10^4) where the input is near white."""
    import torch

    class Wild(torch.nn.Module):
        def forward(self, x):
            up = torch.nn.functional.interpolate(x, scale_factor=SCALE, mode="nearest")
            return up * (1 + 1e4 * (up > 0.99).float())

    torch.onnx.export(
        Wild(),
        (torch.rand(2, 3, 8, 8),),
        str(path),
        dynamo=False,
        input_names=["lr"],
        output_names=["sr"],
        dynamic_axes={"lr": {0: "n", 2: "h", 3: "w"}, "sr": {0: "n", 2: "h", 3: "w"}},
    )


def onnx_graph(path, nodes, initializers=()):
    """An ONNX model lr (n, 3, h, w) -> sr (n, 3, H, W) of `nodes`, opset 17."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["n", 3, "H", "W"])],
        list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def onnx_x4(source, target):
    """x4 by channel repetition and DepthToSpace: runs on any input size."""
    from onnx import helper

    return [
        helper.make_node("Concat", [source] * 16, [target + "_cat"], axis=1),
        helper.make_node("DepthToSpace", [target + "_cat"], [target], blocksize=4),
    ]


def make_failing_onnx(path):
    """Valid ONNX that runs on the small inputs probed at open (up to 1000 values) and fails in onnxruntime on a
    real image (a Reshape to 7 rows that does not divide it)."""
    from onnx import TensorProto as T
    from onnx import helper

    out = [helper.make_tensor_value_info("out", T.FLOAT, None)]
    fail = helper.make_graph(
        [helper.make_node("Reshape", ["lr", "rows"], ["bad"]), *onnx_x4("bad", "out")], "fail", [], out
    )
    fine = helper.make_graph(onnx_x4("lr", "out"), "fine", [], out)
    return onnx_graph(
        path,
        [
            helper.make_node("Size", ["lr"], ["size"]),
            helper.make_node("Greater", ["size", "limit"], ["large"]),
            helper.make_node("If", ["large"], ["sr"], then_branch=fail, else_branch=fine),
        ],
        [helper.make_tensor("limit", T.INT64, [], [1000]), helper.make_tensor("rows", T.INT64, [4], [1, 3, 7, -1])],
    )


def make_looping_onnx(path):
    """A 500-byte model whose Loop runs 2^62 times."""
    from onnx import TensorProto as T
    from onnx import helper

    body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Identity", ["v"], ["v_out"])],
        "b",
        [
            helper.make_tensor_value_info("i", T.INT64, []),
            helper.make_tensor_value_info("c", T.BOOL, []),
            helper.make_tensor_value_info("v", T.FLOAT, None),
        ],
        [helper.make_tensor_value_info("c_out", T.BOOL, []), helper.make_tensor_value_info("v_out", T.FLOAT, None)],
    )
    return onnx_graph(
        path,
        [
            helper.make_node("Constant", [], ["M"], value=helper.make_tensor("M", T.INT64, [], [2**62])),
            helper.make_node("Constant", [], ["go"], value=helper.make_tensor("go", T.BOOL, [], [True])),
            helper.make_node("Loop", ["M", "go", "lr"], ["looped"], body=body),
            *onnx_x4("looped", "sr"),
        ],
    )


def make_blowing_up_onnx(path, computed):
    """A 300-byte model that resizes its input up by 4096 and back down to x4; its scales a constant, or
    `computed` from the input (so that constant folding cannot see them)."""
    from onnx import TensorProto as T
    from onnx import helper

    scales = [
        helper.make_node("ReduceMean", ["lr"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["none"]),
        helper.make_node("Add", ["up", "none"], ["scales"]),
    ]
    return onnx_graph(
        path,
        [
            *(scales if computed else [helper.make_node("Identity", ["up"], ["scales"])]),
            helper.make_node("Resize", ["lr", "", "scales"], ["huge"], mode="nearest"),
            helper.make_node("Resize", ["huge", "", "down"], ["sr"], mode="nearest"),
        ],
        [
            helper.make_tensor("up", T.FLOAT, [4], [1, 1, 4096, 4096]),
            helper.make_tensor("down", T.FLOAT, [4], [1, 1, 1 / 1024, 1 / 1024]),
            helper.make_tensor("zero", T.FLOAT, [], [0.0]),
        ],
    )


# ---------------------------------------------------------------------------------------------------------------
# Decoded stores


DAMAGED_STORES = {
    "misaligned": "store index edited: HR no longer 4 x LR (same byte totals)",
    "overlap": "store index edited: an image's offset overlaps the previous one",
    "beyond": "store index edited: the last image ends outside the file",
    "flipped": "store data: one flipped byte in hr.u8",
}


def damage_store(store, kind):
    """Edit a copy of a decoded store (DAMAGED_STORES); returns what its refusal must name."""
    index = json.loads((store / "store.json").read_text())
    images = index["images"]
    names = str(store / "store.json")
    if kind == "misaligned":
        height, width = images[1]["hr"]
        images[1]["hr"] = [height // 2, width * 2]  # as many bytes: the files' totals still agree
    elif kind == "overlap":
        images[2]["lr_offset"] -= 30
    elif kind == "beyond":
        images[-1]["lr"] = [images[-1]["lr"][0] + 2, images[-1]["lr"][1]]
        images[-1]["hr"] = [v * SCALE for v in images[-1]["lr"]]
        names = str(store / "hr.u8")
    else:
        flip_byte(store / "hr.u8", images[1]["hr_offset"] + 100, 0x01)
        names = f"{store / 'hr.u8'}: image 1"
    if kind != "flipped":
        (store / "store.json").write_text(json.dumps(index))
    return names
