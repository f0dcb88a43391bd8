"""Decode only what is meant; bounded image memory (rules 2 and 4): one opener with explicit formats, alpha,
16-bit, ICC profiles and frames handled on purpose and said, images too large for memory refused up front."""

import numpy as np
from PIL import Image

from bench.faults.case import Case, exists, refused
from bench.faults.commands import SCALE
from bench.faults.harness import describe_failure, error_line, read_log, shorten, slug
from bench.faults.makers import (
    DECODE_ALPHA,
    DECODE_REFUSED,
    adobe_rgb_profile,
    base_image,
    make_bmp_bomb,
    make_png_bomb,
    make_sixteen_bit,
)

READERS = ("training data", "train/evaluate.py", "export/upscale.py")


def output_of(folder):
    """Where export/upscale.py writes the upscale of an image of `folder`: beside the folder."""
    return folder.parent / f"{folder.name}-out.png"


def reading(s, where, folder, file):
    """The command reading `folder` (or, for export/upscale.py, its `file`) as `where` (one of READERS)."""
    if where == "training data":
        return s.c.train(f"decode-{slug(folder.name)}", "--dataset", folder, "--val-dataset", "none")
    if where == "train/evaluate.py":
        return s.c.evaluate(folder)
    return s.c.upscale(file, output_of(folder))


def refused_format(kind, where):
    maker, file_name = DECODE_REFUSED[kind]

    def files(s):
        folder, _ = s.folder(f"decode-{slug(kind)}-{slug(where)}")
        maker(folder / file_name)
        return {"folder": folder, "file": folder / file_name, "out": output_of(folder)}

    written = [(exists("out"), "lost", "refused, but an output was written")] if where == "export/upscale.py" else []
    return Case(
        f"decode / {kind} / {where}",
        kind,
        where,
        files,
        lambda s, f: reading(s, where, f["folder"], f["file"]),
        refused("file", never=written),
    )


def alpha_kept(kind):
    def files(s):
        folder = s.root / f"decode-{slug(kind)}"
        folder.mkdir()
        rgb, alpha = DECODE_ALPHA[kind](folder / "in.png")
        return {"source": folder / "in.png", "target": folder / "out.png", "rgb": rgb, "alpha": alpha}

    def keeps_alpha(ran):
        if ran.outcome.returncode != 0:
            return ran.result("other", describe_failure(ran.outcome))
        from export.runtime import OnnxUpscaler

        with Image.open(ran.files["target"]) as image:
            mode, got = image.mode, np.array(image.convert("RGBA"))
        alpha = ran.files["alpha"]
        height, width = alpha.shape
        reference = np.asarray(Image.fromarray(alpha).resize((width * SCALE, height * SCALE), Image.BICUBIC))
        if mode != "RGBA" or not np.array_equal(got[:, :, 3], reference):
            return ran.result("lost", f"output {mode}: alpha not the bicubic upscale of the input's")
        if not np.array_equal(got[:, :, :3], OnnxUpscaler(ran.suite.onnx, device="cpu")(ran.files["rgb"])):
            return ran.result("lost", "colour differs from the model's upscale")
        return ran.result(
            "handled",
            f"upscales to RGBA {got.shape[1]}x{got.shape[0]}: colour equal to the model's, "
            "alpha equal to a bicubic upscale of the input's",
        )

    return Case(
        f"decode / {kind} / export/upscale.py",
        kind,
        "export/upscale.py",
        files,
        lambda s, f: s.c.upscale(f["source"], f["target"]),
        keeps_alpha,
    )


def alpha_refused(suffix):
    """RGBA into a format without alpha: refused, not flattened."""

    def files(s):
        folder = s.root / f"decode-alpha-{suffix[1:]}"
        folder.mkdir()
        DECODE_ALPHA["RGBA PNG"](folder / "in.png")
        return {"source": folder / "in.png", "target": folder / f"out{suffix}"}

    written = [(exists("target"), "lost", "refused, but the output was written")]
    return Case(
        f"decode / RGBA PNG to {suffix} / export/upscale.py",
        f"RGBA PNG to {suffix}",
        "export/upscale.py",
        files,
        lambda s, f: s.c.upscale(f["source"], f["target"]),
        refused("target", never=written),
    )


def icc_image(s):
    folder = s.root / "decode-icc"
    folder.mkdir()
    icc = adobe_rgb_profile()
    Image.fromarray(base_image(32, 32, seed=30)).save(folder / "in.jpg", icc_profile=icc, quality=95)
    return {"source": folder / "in.jpg", "target": folder / "out.png", "icc": icc}


def carries_the_profile(ran):
    if ran.outcome.returncode != 0:
        return ran.result("other", describe_failure(ran.outcome))
    with Image.open(ran.files["target"]) as image:
        carried = image.info.get("icc_profile")
    if carried != ran.files["icc"]:
        return ran.result("lost", "the output does not carry the input's ICC profile")
    return ran.result("handled", "upscales; the output carries the input's ICC profile, byte for byte")


def kinds_said(where):
    """Alpha, palette tRNS, 16-bit, ICC and several frames in one folder: used, and each kind said in one line."""

    def files(s):
        from PIL import ImageCms

        folder, _ = s.folder(f"decode-kinds-{slug(where)}")
        for kind, maker in DECODE_ALPHA.items():
            maker(folder / f"{slug(kind)}.png")
        make_sixteen_bit(folder / "deep.png")
        Image.fromarray(base_image(seed=31)).save(folder / "icc.jpg", icc_profile=adobe_rgb_profile(), quality=95)
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        Image.fromarray(base_image(seed=34)).save(folder / "srgb.png", icc_profile=srgb)  # sRGB: nothing to say
        frames = [Image.fromarray(base_image(seed=32)), Image.fromarray(base_image(seed=33))]
        frames[0].save(folder / "anim.png", save_all=True, append_images=frames[1:])
        return {"folder": folder, "run": s.c.run_dir(f"decode-{slug(folder.name)}")}

    def said_once_each(ran):
        if ran.outcome.returncode != 0:
            return ran.result("other", describe_failure(ran.outcome))
        said = [line for line in ran.outcome.stderr.splitlines() if line.startswith("warning: ")]
        wanted = {"have alpha": 3, "are 16-bit": 1, "ICC profile": 1, "several frames": 1}
        missing = [w for w, n in wanted.items() if sum(w in line and f" {n} file(s) " in line for line in said) != 1]
        if missing:
            return ran.result("lost", f"not said once with its count: {', '.join(missing)}")
        if where == "training data":
            first = read_log(ran.files["run"])[0]
            if first["train_images"] != 3 + 7:
                return ran.result("lost", f"trained on {first['train_images']} images, not 10")
        return ran.result(
            "handled",
            f"{'trains' if where == 'training data' else 'scores'} on every image; one "
            "warning line per kind: `" + shorten(said[0]) + "`",
        )

    return Case(
        f"decode / kinds said once / {where}",
        "alpha, tRNS, 16-bit, ICC, frames in one folder",
        where,
        files,
        lambda s, f: reading(s, where, f["folder"], None),
        said_once_each,
    )


def bomb(where, bmp=False):
    def files(s):
        folder = s.root / f"decode-bomb-{'bmp' if bmp else 'png'}-{slug(where)}"
        folder.mkdir()
        file = folder / ("bomb.bmp" if bmp else "bomb.png")
        (make_bmp_bomb if bmp else make_png_bomb)(file)
        return {"folder": folder, "file": file}

    def says_size_and_option(ran):
        result = refused("file")(ran)
        line = error_line(ran.outcome) or ""
        if result.verdict == "handled" and not ("GiB" in line and "--max-memory" in line):
            return ran.result("other", f"refused without the size and the option: {line[:160]}")
        return result

    label = "7000x7000 BMP header bomb" if bmp else "9400x9400 PNG bomb"
    return Case(
        f"decode / {label} / {where}",
        "7000x7000 BMP header (118 bytes)" if bmp else "9400x9400 PNG of about 260 KB",
        where,
        files,
        lambda s, f: reading(s, where, f["folder"], f["file"]),
        says_size_and_option,
    )


def cases():
    found = [refused_format(kind, where) for kind in DECODE_REFUSED for where in READERS]
    found += [alpha_kept(kind) for kind in ("RGBA PNG", "palette PNG with tRNS", "LA PNG")]
    found += [
        alpha_refused(".jpg"),
        alpha_refused(".bmp"),
        Case(
            "decode / ICC profile / export/upscale.py",
            "ICC profile (Adobe RGB)",
            "export/upscale.py",
            icc_image,
            lambda s, f: s.c.upscale(f["source"], f["target"]),
            carries_the_profile,
        ),
        kinds_said("training data"),
        kinds_said("train/evaluate.py"),
        bomb("export/upscale.py"),
        bomb("train/evaluate.py"),
        bomb("export/upscale.py", bmp=True),
        bomb("train/evaluate.py", bmp=True),
    ]
    return found
