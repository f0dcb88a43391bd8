"""Fault suite: bad input, interrupted runs and untrusted files against the toolkit's real commands.

    python bench/faults.py [--only SUBSTRING] [--jobs 2] [--keep DIR] [--table docs/reliability.md]

Every case builds its inputs in a temporary folder, runs one of the commands users run (`python train/run.py`,
`python train/evaluate.py`, `python export/upscale.py`) as a subprocess, and judges the outcome:

    handled  it worked as documented (and its output was checked against a reference), or it stopped with one
             line that names the file and the problem (exit status non-zero, `error: ...`, no traceback)
    lost     a run ended without a usable latest checkpoint, or a command exited 0 with wrong output
    other    anything else (a traceback, a hang, an error that does not name the file): a bug to fix

Cases: every kind of bad or odd image file in training data, validation data, evaluate.py and upscale.py;
images smaller than the patch or the scale; empty and image-less folders; unicode paths; mismatched LR/HR pairs;
--skip-corrupt; SIGKILL mid-run and while a checkpoint is written, SIGTERM (each resumed with --resume latest and
compared with an uninterrupted run, exactly); a loss that turns NaN; and, with launch_configs/cpu_ddp.yaml, an
exception or a NaN in one of two processes. Faults that need a hand inside the process (a kill between writing
and renaming a checkpoint, a NaN loss, an exception in rank 1) run train/run.py's own `main` from a small wrapper
that patches one function: no test hooks in the toolkit.

The last line is the summary: `N cases, N handled, 0 lost`. A tiny PAN (8 channels, one block) on 8x8 LR
patches keeps each training run to seconds; most of the time is Python importing torch, accelerate and datasets
(about 6 minutes for the suite on 2 busy cores).
"""

import argparse
import concurrent.futures
import contextlib
import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from sr_models.images import load_rgb, save_rgb  # noqa: E402

SCALE = 4
# --repeat-images: folders of 1-3 images; the too-small case sets it false.
TINY = ["--model-overrides", "{channels: 8, upsample_channels: 8, num_blocks: 1}", "--lr-patch-size", "8",
        "--progress", "false", "--log-with", "none", "--num-threads", "1", "--batch-size", "2",
        "--log-every", "1", "--scale", str(SCALE),
        "--repeat-images", "true"]  # fmt: skip
TIMEOUT = 120  # seconds for one command; a hang is a failure, not a wait


# ---------------------------------------------------------------------------------------------------------------
# The bad (and odd but valid) files. Each maker writes a file and returns the RGB uint8 array a reader must
# produce from it (None for files that must be refused).


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


# ---------------------------------------------------------------------------------------------------------------
# Running and judging


@dataclass
class Result:
    case: str
    where: str
    verdict: str  # handled | lost | other
    what: str  # what happened, for the table
    seconds: float = 0.0


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False


def run(command, *, cwd=REPO, env=None, timeout=TIMEOUT, memory_limit=None):
    """`memory_limit`: bytes of address space, for a case that would otherwise take the machine's memory."""
    import resource

    start = time.perf_counter()
    environment = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **(env or {})}
    limit = (lambda: resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))) if memory_limit else None
    try:
        done = subprocess.run([sys.executable, *command], cwd=cwd, env=environment, capture_output=True, text=True,
                              timeout=timeout, preexec_fn=limit)  # fmt: skip
        return Outcome(done.returncode, done.stdout, done.stderr, time.perf_counter() - start)
    except subprocess.TimeoutExpired as expired:
        return Outcome(-1, str(expired.stdout or ""), str(expired.stderr or ""), time.perf_counter() - start, True)


def error_line(outcome):
    """The one `error: ...` line of a refused command, or None when it failed some other way."""
    if outcome.returncode == 0 or outcome.timed_out or "Traceback" in outcome.stderr:
        return None
    lines = [line for line in outcome.stderr.strip().splitlines() if line.startswith("error: ")]
    return lines[-1] if lines else None


def judge_refusal(case, where, outcome, *, names):
    """Handled when the command stopped with one `error:` line that contains `names` (the file or folder)."""
    line = error_line(outcome)
    if line is not None and names in line:
        return Result(case, where, "handled", f"refused: `{shorten(line, names)}`", outcome.seconds)
    if outcome.returncode == 0:
        return Result(case, where, "lost", "exited 0 on a file it should refuse", outcome.seconds)
    return Result(case, where, "other", describe_failure(outcome), outcome.seconds)


def describe_failure(outcome):
    if outcome.timed_out:
        return f"hung (killed after {TIMEOUT} s)"
    tail = (outcome.stderr.strip().splitlines() or ["(no output)"])[-1]
    kind = "traceback" if "Traceback" in outcome.stderr else f"exit {outcome.returncode}"
    return f"{kind}: {tail[:200]}"


SCRATCH = None  # the suite's temporary folder, shown as `...` in the table so that it reads the same every run


def shorten(line, names=None):
    """The error line without the temporary folders the files live in, cut to a table cell's length."""
    if names:
        line = line.replace(names.rsplit("/", 1)[0] + "/", ".../")
    if SCRATCH:
        line = line.replace(str(SCRATCH) + "/", ".../")
    return line[:160]


# ---------------------------------------------------------------------------------------------------------------
# The cases


class Suite:
    def __init__(self, root):
        global SCRATCH
        self.root = SCRATCH = Path(root)
        self.results = []
        self.good = self.root / "good"  # 3 good training images, shared by the folders built below
        self.good.mkdir()
        for seed in range(3):
            save_rgb(self.good / f"good{seed}.png", base_image(seed=seed))
        self.weights, self.onnx = self.tiny_model()
        self.lock = threading.Lock()
        self.whole = None

    def folder(self, name, extra=()):
        """A fresh folder holding the good images plus `extra` [(file name, maker)]."""
        folder = self.root / name
        shutil.copytree(self.good, folder)
        expected = {}
        for file_name, maker in extra:
            expected[file_name] = maker(folder / file_name)
        return folder, expected

    def tiny_model(self):
        import torch

        from export.to_onnx import build_onnx
        from sr_models import create_model
        from sr_models.weights import save_weights

        torch.manual_seed(0)
        model = create_model("pan", scale=SCALE, channels=8, upsample_channels=8, num_blocks=1).eval()
        weights = self.root / "tiny.safetensors"
        save_weights(model, weights)
        onnx_path = self.root / "tiny.onnx"
        build_onnx(model, onnx_path, precision="fp32")
        return weights, onnx_path

    def train(self, name, *args, steps=2):
        run_dir = self.root / "runs" / name
        command = ["train/run.py", *TINY, "--steps", str(steps), "--output-dir", str(run_dir),
                   "--cache-dir", str(self.root / "hf-cache"), *args]  # fmt: skip
        return run(command), run_dir

    # ---- cases, each returns a Result ---------------------------------------------------------------------

    def train_file(self, case):
        maker, suffix, _ = FILES[case]
        file_name = f"case{suffix}"
        folder, _ = self.folder(f"train-{slug(case)}", [(file_name, maker)])
        outcome, _ = self.train(slug(case), "--dataset", str(folder), "--val-dataset", "none")
        return judge_refusal(case, "training data", outcome, names=str(folder / file_name))

    def train_normalised(self):
        """One run on a folder holding every odd-but-valid kind beside the good images: each must be used.
        (That each decodes to the reference array is tests/test_faults.py's job, in-process.)"""
        cases = [c for c in FILES if not FILES[c][2]]
        folder, _ = self.folder("train-normalised", [(f"{slug(c)}{FILES[c][1]}", FILES[c][0]) for c in cases])
        outcome, run_dir = self.train("normalised", "--dataset", str(folder), "--val-dataset", "none")
        result = self.judge_trained("", "training data", outcome, run_dir, images=3 + len(cases))
        if result.verdict == "handled":
            result.what = (f"trains: read as 8-bit RGB (one run with all {len(cases)} kinds beside 3 good images, "
                           "every image used)")  # fmt: skip
        return [Result(c, result.where, result.verdict, result.what, result.seconds) for c in cases]

    def judge_trained(self, case, where, outcome, run_dir, *, images):
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        problem = usable_run(run_dir)
        if problem:
            return Result(case, where, "lost", problem, outcome.seconds)
        start = read_log(run_dir)[0]
        if start["train_images"] != images:
            return Result(case, where, "lost", f"trained on {start['train_images']} images, not {images}",
                          outcome.seconds)  # fmt: skip
        return Result(case, where, "handled", f"trains ({images} images used)", outcome.seconds)

    def val_file(self, case):
        maker, suffix, _ = FILES[case]
        folder = self.root / f"val-{slug(case)}"
        folder.mkdir()
        save_rgb(folder / "good.png", base_image(seed=5))
        maker(folder / f"case{suffix}")
        outcome, _ = self.train(f"val-{slug(case)}", "--dataset", str(self.good), "--val-dataset", str(folder),
                                steps=1)  # fmt: skip
        return judge_refusal(case, "validation data", outcome, names=str(folder / f"case{suffix}"))

    def val_normalised(self):
        """One run validating on every odd-but-valid kind: the bicubic baseline's mean PSNR_Y over them must be
        the mean of the figures computed here from the reference arrays (a different decode would change it)."""
        cases = [c for c in FILES if not FILES[c][2]]
        folder = self.root / "val-normalised"
        folder.mkdir()
        references = [FILES[c][0](folder / f"{slug(c)}{FILES[c][1]}") for c in cases]
        outcome, run_dir = self.train("val-normalised", "--dataset", str(self.good), "--val-dataset", str(folder),
                                      steps=1)  # fmt: skip
        where = "validation data"

        def each(verdict, what):
            return [Result(c, where, verdict, what, outcome.seconds) for c in cases]

        if outcome.returncode != 0:
            return each("other", describe_failure(outcome))
        problem = usable_run(run_dir)
        if problem:
            return each("lost", problem)
        got = json.loads((run_dir / "metrics.json").read_text())["bicubic_psnr_y"]
        reference = float(np.mean([bicubic_psnr_y(r) for r in references]))
        if abs(got - reference) > 1e-6:
            return each("lost", f"bicubic PSNR_Y {got:.4f} != reference {reference:.4f}: decoded differently")
        return each("handled", f"validates: read as 8-bit RGB (one run with all {len(cases)} kinds; mean bicubic "
                    "PSNR_Y equal to the reference decode's)")  # fmt: skip

    def evaluate_file(self, case):
        maker, suffix, refused = FILES[case]
        folder = self.root / f"eval-{slug(case)}"
        folder.mkdir()
        expected = maker(folder / f"case{suffix}")
        report = self.root / f"eval-{slug(case)}.json"
        outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(folder), "--json", str(report),
                       "--device", "cpu"])  # fmt: skip
        where = "train/evaluate.py"
        if refused:
            return judge_refusal(case, where, outcome, names=str(folder / f"case{suffix}"))
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        got = json.loads(report.read_text())["mean"]["bicubic_psnr_y"]
        reference = bicubic_psnr_y(expected)
        if abs(got - reference) > 1e-6:
            return Result(case, where, "lost", f"bicubic PSNR_Y {got:.3f} != reference {reference:.3f}",
                          outcome.seconds)  # fmt: skip
        return Result(case, where, "handled", "scores: read as 8-bit RGB, same figures as the reference decode",
                      outcome.seconds)  # fmt: skip

    def upscale_file(self, case):
        maker, suffix, refused = FILES[case]
        folder = self.root / f"up-{slug(case)}"
        folder.mkdir()
        source = folder / f"case{suffix}"
        expected = maker(source)
        target = folder / "out.png"
        outcome = run(["export/upscale.py", str(self.onnx), str(source), str(target), "--device", "cpu"])
        where = "export/upscale.py"
        if refused:
            return judge_refusal(case, where, outcome, names=str(source))
        return self.judge_upscaled(case, outcome, target, expected)

    def judge_upscaled(self, case, outcome, target, expected):
        where = "export/upscale.py"
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        from export.runtime import OnnxUpscaler

        reference = OnnxUpscaler(self.onnx, device="cpu")(expected)
        got = load_rgb(target)
        if got.shape != reference.shape:
            return Result(case, where, "lost", f"output {got.shape} != expected {reference.shape}", outcome.seconds)
        difference = np.abs(got.astype(int) - reference.astype(int)).mean()
        if difference > 0:
            return Result(case, where, "lost", f"output differs from the reference by {difference:.2f} on average",
                          outcome.seconds)  # fmt: skip
        return Result(case, where, "handled", f"upscales: {got.shape[1]}x{got.shape[0]} RGB, equal to the reference",
                      outcome.seconds)  # fmt: skip

    # ---- size, folder and path cases ----------------------------------------------------------------------

    def train_small(self, case, maker, option):
        folder, _ = self.folder(f"train-{slug(case)}-{option}", [("tiny.png", maker)])
        outcome, run_dir = self.train(f"{slug(case)}-{option}", "--dataset", str(folder), "--val-dataset", "none",
                                      "--small-images", option)  # fmt: skip
        if option == "error":
            return judge_refusal(case, "training data (--small-images error)", outcome, names=str(folder / "tiny.png"))
        result = self.judge_trained(case, f"training data (--small-images {option})", outcome, run_dir,
                                    images=3 if option == "skip" else 4)  # fmt: skip
        if result.verdict == "handled":
            result.what = {"skip": "left out and counted (left_out_small in log.jsonl); trains on the rest",
                           "pad": "mirror-padded to the patch size (LR and HR alike); trains"}[option]  # fmt: skip
        return result

    def train_skip_corrupt(self):
        case = "every unreadable kind at once, --skip-corrupt true"
        bad = [(f"bad{i}{FILES[c][1]}", FILES[c][0]) for i, c in enumerate(FILES) if FILES[c][2]]
        folder, _ = self.folder("train-skip-corrupt", bad)
        outcome, run_dir = self.train("skip-corrupt", "--dataset", str(folder), "--val-dataset", "none",
                                      "--skip-corrupt", "true", steps=3)  # fmt: skip
        where = "training data"
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        problem = usable_run(run_dir)
        if problem:
            return Result(case, where, "lost", problem, outcome.seconds)
        log = read_log(run_dir)
        counted = log[0]["left_out_corrupt"] + max(r.get("skipped_images", 0) for r in log)
        named = all(name in outcome.stderr for name, _ in bad)
        if counted < 1 or not named:
            return Result(case, where, "other", f"skipped {counted}, warnings name every file: {named}", outcome.seconds)
        return Result(case, where, "handled", f"trains on the 3 good images; bad files named in a warning and counted "
                      f"({log[0]['left_out_corrupt']} at the header check, the rest when read)", outcome.seconds)  # fmt: skip

    def empty_folder(self, where):
        folder = self.root / f"empty-{slug(where)}"
        folder.mkdir()
        return self.folder_case("empty folder", where, folder)

    def non_images_folder(self, where):
        folder = self.root / f"notes-{slug(where)}"
        folder.mkdir()
        (folder / "readme.txt").write_text("no images here\n")
        (folder / "labels.csv").write_text("a,b\n")
        return self.folder_case("folder of only non-images", where, folder)

    def folder_case(self, case, where, folder):
        if where == "training data":
            outcome, _ = self.train(f"{slug(case)}-train", "--dataset", str(folder), "--val-dataset", "none")
        elif where == "validation data":
            outcome, _ = self.train(f"{slug(case)}-val", "--dataset", str(self.good), "--val-dataset", str(folder))
        elif where == "train/evaluate.py":
            outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(folder), "--device", "cpu"])
        else:
            outcome = run(["export/upscale.py", str(self.onnx), str(folder), str(self.root / "out-empty"), "--device", "cpu"])
        return judge_refusal(case, where, outcome, names=str(folder))

    def unicode_paths(self, where):
        case = "unicode and spaces in paths"
        folder = self.root / f"dónnées ünï 写真 {slug(where)}"
        folder.mkdir()
        image = base_image(seed=7)
        save_rgb(folder / "photo é 1.png", image)
        save_rgb(folder / "photo é 2.png", base_image(seed=8))
        if where == "training data":
            outcome, run_dir = self.train("unicode-train", "--dataset", str(folder), "--val-dataset", "none")
            return self.judge_trained(case, where, outcome, run_dir, images=2)
        if where == "validation data":
            outcome, run_dir = self.train("unicode-val", "--dataset", str(self.good), "--val-dataset", str(folder),
                                          "--output-dir", str(self.root / "runs" / "ü run"), steps=1)  # fmt: skip
            run_dir = self.root / "runs" / "ü run"
            if outcome.returncode != 0:
                return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
            problem = usable_run(run_dir)
            return Result(case, where, "lost" if problem else "handled", problem or "validates, run folder with ü works",
                          outcome.seconds)  # fmt: skip
        if where == "train/evaluate.py":
            report = folder.parent / f"report é {slug(where)}.json"  # beside the set: never inside an input folder
            outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(folder), "--json",
                           str(report), "--device", "cpu"])  # fmt: skip
            if outcome.returncode != 0:
                return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
            rows = json.loads(report.read_text())["images"]
            ok = [r["name"] for r in rows] == ["photo é 1", "photo é 2"]
            return Result(case, where, "handled" if ok else "lost", "scores both images, names kept" if ok else
                          f"wrong rows {rows}", outcome.seconds)  # fmt: skip
        target = folder / "sortie é.png"
        outcome = run(["export/upscale.py", str(self.onnx), str(folder / "photo é 1.png"), str(target), "--device", "cpu"])
        return self.judge_upscaled(case, outcome, target, image)

    def mismatched_pair(self, where):
        case = "LR/HR pair whose sizes do not match the scale"
        hr_dir = self.root / f"pair-{slug(where)}" / "HR"
        lr_dir = self.root / f"pair-{slug(where)}" / "LR_bicubic" / f"X{SCALE}"
        hr_dir.mkdir(parents=True)
        lr_dir.mkdir(parents=True)
        for seed in range(2):
            save_rgb(hr_dir / f"im{seed}.png", base_image(seed=seed))
            save_rgb(lr_dir / f"im{seed}x{SCALE}.png", base_image(24, 24, seed=seed))
        save_rgb(lr_dir / f"im1x{SCALE}.png", base_image(32, 24, seed=1))  # 24 wide, 32 high: not 96/4
        bad = str(lr_dir / f"im1x{SCALE}.png")
        if where == "training data":
            outcome, _ = self.train("pair-train", "--dataset", str(hr_dir), "--lr-dataset", str(lr_dir),
                                    "--val-dataset", "none")  # fmt: skip
        elif where == "validation data":
            outcome, _ = self.train("pair-val", "--dataset", str(self.good), "--val-dataset", str(hr_dir.parent))
        else:
            outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(hr_dir), "--lr", str(lr_dir),
                           "--device", "cpu"])  # fmt: skip
        return judge_refusal(case, where, outcome, names=bad)

    # ---- interrupted runs ---------------------------------------------------------------------------------

    RESUMABLE = ["--val-dataset", "none", "--save-every", "2", "--lr", "0.01"]

    def uninterrupted(self):
        """The reference run of the interruption cases (8 steps), made once and shared between threads."""
        with self.lock:
            if self.whole is None:
                self.whole = self.train("whole", "--dataset", str(self.good), *self.RESUMABLE, steps=8)
        return self.whole

    def resume_and_compare(self, case, name, started, *, why):
        """Resume run `name` with --resume latest and compare its final weights with the uninterrupted run's."""
        where = "train/run.py"
        whole, whole_dir = self.uninterrupted()
        if whole.returncode != 0:
            return Result(case, where, "other", "uninterrupted run failed: " + describe_failure(whole))
        resumed, run_dir = self.train(name, "--resume", "latest", steps=8)
        seconds = time.perf_counter() - started
        if resumed.returncode != 0:
            return Result(case, where, "lost", "resume failed: " + describe_failure(resumed), seconds)
        from sr_models.weights import load_model

        a = load_model(whole_dir / "model.safetensors").state_dict()
        b = load_model(run_dir / "model.safetensors").state_dict()
        difference = max((a[k] - b[k]).abs().max().item() for k in a)
        if difference != 0:
            return Result(case, where, "lost", f"resumed weights differ by {difference:.2e}", seconds)
        return Result(case, where, "handled", f"{why}; --resume latest ends with weights identical to an "
                      "uninterrupted run's", seconds)  # fmt: skip

    def start_training(self, name, *, prefix=(), env=None, extra=(), new_session=False):
        run_dir = self.root / "runs" / name
        command = [sys.executable, *prefix, *([] if prefix else ["train/run.py"]), *TINY, "--steps", "8",
                   "--output-dir", str(run_dir), "--cache-dir", str(self.root / "hf-cache"), "--dataset",
                   str(self.good), *self.RESUMABLE, *extra]  # fmt: skip
        environment = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", **(env or {})}
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, start_new_session=new_session)  # fmt: skip
        return process, run_dir

    def killed_and_resumed(self):
        """SIGKILL as soon as the first checkpoint is complete, while the run goes on."""
        case = "SIGKILL mid-run"
        started = time.perf_counter()
        process, run_dir = self.start_training("killed")
        wait_for(process, lambda: (run_dir / "checkpoints" / "step-00000002").is_dir())  # the first complete one
        process.send_signal(signal.SIGKILL)
        process.communicate()
        return self.resume_and_compare(case, "killed", started, why="killed after the step-2 checkpoint")

    def killed_while_saving(self):
        """SIGKILL between writing the step-4 checkpoint's files and renaming its folder complete."""
        case = "SIGKILL while a checkpoint is being written"
        started = time.perf_counter()
        process, run_dir = self.start_training("killed-saving", prefix=["-c", KILL_WHILE_SAVING])
        process.communicate(timeout=TIMEOUT)
        names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
        if process.returncode != -signal.SIGKILL or names != ["step-00000002", "step-00000004.partial"]:
            return Result(case, "train/run.py", "other", f"expected a kill with a .partial folder, got exit "
                          f"{process.returncode} and {names}", time.perf_counter() - started)  # fmt: skip
        return self.resume_and_compare(case, "killed-saving", started,
                                       why="the half-written step-4 folder stays `.partial` and is never resumed from")  # fmt: skip

    def terminated(self):
        """SIGTERM (a scheduler's preemption) once step 1 is logged: save a final state and exit non-zero."""
        case = "SIGTERM mid-run"
        started = time.perf_counter()
        process, run_dir = self.start_training("terminated")
        wait_for(process, lambda: '"step": 1,' in read_text(run_dir / "log.jsonl"))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
        outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
        line = error_line(outcome)
        if process.returncode != 128 + signal.SIGTERM or not line or "stopped by SIGTERM" not in line:
            return Result(case, "train/run.py", "other", f"no saved stop: {describe_failure(outcome)}", outcome.seconds)
        return self.resume_and_compare(case, "terminated", started, why=f"saves its state at the next step, exits "
                                       f"{process.returncode} with `error: stopped by SIGTERM after step N, state "
                                       "saved in ...; continue with: --resume latest ...`")  # fmt: skip

    def diverging(self):
        """A loss that turns NaN at step 3 for good: skipped steps, then a clear stop with the good checkpoint."""
        case = "NaN loss from step 3 on (max_nonfinite_steps 3)"
        where = "train/run.py"
        started = time.perf_counter()
        process, run_dir = self.start_training("diverging", prefix=["-c", NAN_FROM_STEP_3])
        _, stderr = process.communicate(timeout=TIMEOUT)
        outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
        line = error_line(outcome)
        if not line or "diverged" not in line:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        from train.config import latest_checkpoint

        latest = latest_checkpoint(run_dir)
        if latest is None or latest.name != "step-00000002":
            return Result(case, where, "lost", f"latest checkpoint {latest}, not the last good step-00000002",
                          outcome.seconds)  # fmt: skip
        return Result(case, where, "handled", "steps 3-5 skipped and counted, then stopped with "
                      f"`{shorten(line, str(self.root) + '/')[:120]}...`; step-2 checkpoint kept", outcome.seconds)  # fmt: skip

    # ---- two processes ------------------------------------------------------------------------------------

    def launch_two(self, name, mode):
        """`accelerate launch` with launch_configs/cpu_ddp.yaml (2 gloo processes) of a wrapper whose rank 1 has
        a fault at its second optimizer step: `raise` (an exception) or `nan` (a NaN loss in that rank only)."""
        script = self.root / "ddp_fault.py"
        with self.lock:
            script.write_text(DDP_FAULT)
        run_dir = self.root / "runs" / name
        command = ["-m", "accelerate.commands.launch", "--config_file", str(REPO / "launch_configs" / "cpu_ddp.yaml"),
                   "--main_process_port", str(free_port()), str(script), *TINY, "--steps", "4", "--output-dir",
                   str(run_dir), "--cache-dir", str(self.root / "hf-cache"), "--dataset", str(self.good),
                   "--val-dataset", "none"]  # fmt: skip
        return run(command, env={"FAULT_MODE": mode}), run_dir

    def ddp_exception(self):
        case = "exception in rank 1 of 2 processes"
        where = "accelerate launch (cpu_ddp)"
        outcome, _ = self.launch_two("ddp-raise", "raise")
        if outcome.timed_out:
            return Result(case, where, "other", f"hung: still running after {TIMEOUT} s", outcome.seconds)
        if outcome.returncode == 0 or "injected fault in rank 1" not in outcome.stderr:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        return Result(case, where, "handled", f"both processes end (exit {outcome.returncode}, no hang); the rank-1 "
                      "RuntimeError and its traceback are in stderr", outcome.seconds)  # fmt: skip

    def ddp_nan(self):
        case = "NaN loss in rank 1 only (2 processes)"
        where = "accelerate launch (cpu_ddp)"
        outcome, run_dir = self.launch_two("ddp-nan", "nan")
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        log = read_log(run_dir)
        digests = [r["weights_digest"] for r in log if r.get("event") == "end"][0]
        skipped = max(r.get("nonfinite_steps", 0) for r in log)
        if len(set(digests)) != 1 or skipped != 1:
            return Result(case, where, "lost", f"digests {digests}, {skipped} steps skipped", outcome.seconds)
        return Result(case, where, "handled", "both processes skip step 2 together (no hang), 1 step counted, "
                      "identical final weights", outcome.seconds)  # fmt: skip

    def ddp_too_small(self):
        case = "data set too small for 2 processes x batch 2"
        where = "accelerate launch (cpu_ddp)"
        run_dir = self.root / "runs" / "ddp-too-small"
        command = ["-m", "accelerate.commands.launch", "--config_file", str(REPO / "launch_configs" / "cpu_ddp.yaml"),
                   "--main_process_port", str(free_port()), "train/run.py", *TINY, "--steps", "4", "--output-dir",
                   str(run_dir), "--cache-dir", str(self.root / "hf-cache"), "--dataset", str(self.good),
                   "--val-dataset", "none", "--repeat-images", "false"]  # fmt: skip
        outcome = run(command)
        numbers = "too small for 2 process(es) x batch size 2: 3 usable training image(s)"
        if outcome.timed_out:
            return Result(case, where, "other", f"hung: still running after {TIMEOUT} s", outcome.seconds)
        if outcome.returncode == 0 or numbers not in outcome.stderr:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        if list(run_dir.glob("checkpoints/*")):
            return Result(case, where, "other", "refused, but only after training had started", outcome.seconds)
        return Result(case, where, "handled", f"refused before training by both processes: `{numbers} ...`",
                      outcome.seconds)  # fmt: skip


    # ---- rule 1: never destroy what the user has ------------------------------------------------------------

    def judge_kept(self, case, where, outcome, kept, *, names):
        """A refusal (one `error:` line naming `names`) that left every file of `kept` ({path: bytes}) as it was."""
        changed = [str(path) for path, data in kept.items() if not path.is_file() or path.read_bytes() != data]
        if changed:
            return Result(case, where, "lost", f"changed or removed: {', '.join(changed)[:120]}", outcome.seconds)
        result = judge_refusal(case, where, outcome, names=names)
        if result.verdict == "handled":
            result.what += "; nothing of the user's changed"
        return result

    def upscale_onto_input(self, overwrite):
        case = "output file = input file" + (" (with --overwrite)" if overwrite else "")
        folder = self.root / f"same-{overwrite}"
        folder.mkdir()
        source = folder / "in.png"
        save_rgb(source, base_image(seed=20))
        kept = {source: source.read_bytes()}
        outcome = run(["export/upscale.py", str(self.onnx), str(source), str(source), "--device", "cpu",
                       *(["--overwrite"] if overwrite else [])])  # fmt: skip
        return self.judge_kept(case, "export/upscale.py", outcome, kept, names=str(source))

    def upscale_into_input_folder(self, inside):
        case = "output folder " + ("inside the input folder" if inside else "= input folder")
        folder = self.root / f"photos-{inside}"
        folder.mkdir()
        for seed in range(2):
            save_rgb(folder / f"p{seed}.png", base_image(seed=seed))
        kept = {p: p.read_bytes() for p in folder.iterdir()}
        target = folder / "x4" if inside else folder
        outcome = run(["export/upscale.py", str(self.onnx), str(folder), str(target), "--device", "cpu"])
        result = self.judge_kept(case, "export/upscale.py", outcome, kept, names=str(target))
        if result.verdict == "handled" and inside and target.exists():
            return Result(case, result.where, "other", "refused, but left an empty output folder", outcome.seconds)
        return result

    def existing_output(self, where):
        case = "output file that already exists (written by an earlier run)"
        folder = self.root / f"existing-{slug(where)}"
        folder.mkdir()
        save_rgb(folder / "in.png", base_image(seed=21))
        if where == "export/upscale.py":
            target = folder / "out.png"
            command = ["export/upscale.py", str(self.onnx), str(folder / "in.png"), str(target), "--device", "cpu"]
        elif where == "train/evaluate.py":  # beside --hr, not in it (an output never lies inside an input folder)
            target = folder.with_name(folder.name + "-report.json")
            command = ["train/evaluate.py", "--weights", str(self.weights), "--hr", str(folder), "--json", str(target),
                       "--device", "cpu"]  # fmt: skip
        elif where == "export/to_onnx.py":
            target = folder / "model.onnx"
            command = ["export/to_onnx.py", "--weights", str(self.weights), "--output", str(target), "--no-parity"]
        else:  # python -m train.data prepare
            target = folder / "prepared"
            command = ["-m", "train.data", "prepare", "--dataset", str(self.good), "--output", str(target),
                       "--scale", str(SCALE), "--subimage-size", "48", "--subimage-step", "48",
                       "--cache-dir", str(self.root / "hf-cache")]  # fmt: skip
        earlier = run(command)  # an earlier output of ours (a user's own file is never replaced: "destroy /" cases)
        if earlier.returncode != 0:
            return Result(case, where, "other", describe_failure(earlier), earlier.seconds)
        kept = {p: p.read_bytes() for p in ([target] if target.is_file() else target.iterdir())}
        inode = target.stat().st_ino
        outcome = run(command)
        result = self.judge_kept(case, where, outcome, kept, names=str(target))
        if result.verdict != "handled":
            return result
        replaced = run([*command, "--overwrite"])  # and --overwrite replaces it, with a complete result
        if replaced.returncode != 0 or target.stat().st_ino == inode:
            return Result(case, where, "other", f"--overwrite did not replace it: {describe_failure(replaced)}",
                          outcome.seconds + replaced.seconds)  # fmt: skip
        result.what += "; --overwrite replaces it"
        return result

    def run_into_users_folder(self):
        case = "new run in a folder holding a user's config.yaml and metrics.json"
        folder = self.root / "users-folder"
        folder.mkdir()
        (folder / "config.yaml").write_text("mine: true\n")
        (folder / "metrics.json").write_text('{"mine": 1}\n')
        kept = {p: p.read_bytes() for p in folder.iterdir()}
        outcome = run(["train/run.py", *TINY, "--steps", "1", "--output-dir", str(folder), "--dataset", str(self.good),
                       "--val-dataset", "none"])  # fmt: skip
        result = self.judge_kept(case, "train/run.py", outcome, kept, names=str(folder))
        if result.verdict == "handled" and sorted(p.name for p in folder.iterdir()) != sorted(p.name for p in kept):
            return Result(case, result.where, "other", "refused, but added files to the folder", outcome.seconds)
        return result

    def resume_into_another_run(self):
        case = "--resume run A's checkpoint with --output-dir = finished run B"
        outcome_a, run_a = self.train("resume-a", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--stop-after", "1", steps=3)  # fmt: skip
        outcome_b, run_b = self.train("resume-b", "--dataset", str(self.good), "--val-dataset", "none", steps=1)
        if outcome_a.returncode or outcome_b.returncode:
            return Result(case, "train/run.py", "other", "set-up runs failed: " + describe_failure(outcome_a))
        kept = {p: p.read_bytes() for p in run_b.rglob("*") if p.is_file()}
        outcome = run(["train/run.py", "--resume", str(run_a / "checkpoints" / "step-00000001"), "--output-dir",
                       str(run_b), "--progress", "false"])  # fmt: skip
        return self.judge_kept(case, "train/run.py", outcome, kept, names=str(run_b))

    def two_runs_at_once(self):
        case = "two runs started at the same instant on one run folder"
        where = "train/run.py (2 processes)"
        folder = self.root / "runs" / "race"
        command = [sys.executable, "train/run.py", *TINY, "--steps", "3", "--output-dir", str(folder), "--dataset",
                   str(self.good), "--val-dataset", "none", "--cache-dir", str(self.root / "hf-cache")]  # fmt: skip
        environment = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
        started = time.perf_counter()
        processes = [subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip
        outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
        outcomes = [Outcome(p.returncode, out, err, time.perf_counter() - started)
                    for p, (out, err) in zip(processes, outputs)]  # fmt: skip
        codes = sorted(o.returncode for o in outcomes)
        refused = [o for o in outcomes if o.returncode != 0]
        line = error_line(refused[0]) if refused else None
        events = [r.get("event") for r in read_log(folder) if r.get("event")] if (folder / "log.jsonl").exists() else []
        seconds = time.perf_counter() - started
        if codes != [0, 1] or not line or events != ["start", "end"] or usable_run(folder):
            return Result(case, where, "lost" if events != ["start", "end"] else "other",
                          f"exit codes {codes}, log events {events}, refusal {line!r}", seconds)  # fmt: skip
        return Result(case, where, "handled", f"one trains, the other is refused: `{shorten(line)}`", seconds)

    def output_under_a_file(self, where):
        case = "output path under a file"
        blocker = self.root / f"blocker-{slug(where)}.png"
        save_rgb(blocker, base_image(seed=22))
        if where == "export/upscale.py":
            outcome = run(["export/upscale.py", str(self.onnx), str(blocker), str(blocker / "out.png"), "--device", "cpu"])
        elif where == "train/evaluate.py":
            folder = self.root / "under-file-eval"
            folder.mkdir()
            save_rgb(folder / "a.png", base_image(seed=23))
            outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(folder), "--json",
                           str(blocker / "report.json"), "--device", "cpu"])  # fmt: skip
        else:
            outcome = run(["train/run.py", *TINY, "--steps", "1", "--output-dir", str(blocker / "run"), "--dataset",
                           str(self.good), "--val-dataset", "none"])  # fmt: skip
        return judge_refusal(case, where, outcome, names=str(blocker))

    def umask_respected(self):
        case = "files take the user's umask (022: mode 0644)"
        where = "train/run.py, export/upscale.py"
        run_dir = self.root / "runs" / "umask"
        target = self.root / "umask-out.png"
        started = time.perf_counter()
        old = os.umask(0o022)
        try:
            trained = run(["train/run.py", *TINY, "--steps", "1", "--output-dir", str(run_dir), "--dataset",
                           str(self.good), "--val-dataset", "none"])  # fmt: skip
            upscaled = run(["export/upscale.py", str(self.onnx), str(self.good / "good0.png"), str(target),
                            "--device", "cpu"])  # fmt: skip
        finally:
            os.umask(old)
        files = [run_dir / "model.safetensors", run_dir / "metrics.json", run_dir / "config.yaml", target]
        if trained.returncode or upscaled.returncode:
            return Result(case, where, "other", describe_failure(trained if trained.returncode else upscaled))
        modes = {f.name: oct(f.stat().st_mode & 0o777) for f in files}
        if set(modes.values()) != {"0o644"}:
            return Result(case, where, "other", f"modes {modes}", time.perf_counter() - started)
        return Result(case, where, "handled", "weights, metrics, config and images are written 0644",
                      time.perf_counter() - started)  # fmt: skip

    def interrupted_twice_while_saving(self):
        """Ctrl-C, then Ctrl-C again while the stop's checkpoint is being written (save_state slowed down)."""
        case = "second Ctrl-C while the stop checkpoint is written"
        where = "train/run.py"
        started = time.perf_counter()
        process, run_dir = self.start_training("twice", prefix=["-c", SLOW_SAVE])
        wait_for(process, lambda: (run_dir / "checkpoints" / "step-00000002").is_dir())
        process.send_signal(signal.SIGINT)
        wait_for(process, lambda: any(p.name.endswith(".partial") and p.name != "step-00000002.partial"
                                      for p in (run_dir / "checkpoints").iterdir()))  # fmt: skip
        time.sleep(1.5)  # a second request, not the first delivered again (train/run.py: StopSignals.REPEAT_AFTER_S)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=TIMEOUT)
        outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
        line = error_line(outcome)
        if process.returncode != 128 + signal.SIGINT or not line or "second SIGINT" not in line:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        return self.resume_and_compare(case, "twice", started, why=f"stops at once, exit 130, `{shorten(line)[:90]}...`")

    def terminated_with_workers(self, signum=signal.SIGTERM):
        """SIGTERM (a scheduler) or SIGHUP (a closed terminal) to the whole process group: DataLoader workers get it
        too."""
        name = signal.Signals(signum).name
        case = f"{name} to the process group, 2 DataLoader workers"
        where = "train/run.py"
        started = time.perf_counter()
        label = f"group-{name.lower()}"
        process, run_dir = self.start_training(label, extra=["--num-workers", "2"], new_session=True)
        wait_for(process, lambda: '"step": 1,' in read_text(run_dir / "log.jsonl"))
        os.killpg(process.pid, signum)
        _, stderr = process.communicate(timeout=TIMEOUT)
        outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
        line = error_line(outcome)
        if process.returncode != 128 + signum or not line or f"stopped by {name}" not in line:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        return self.resume_and_compare(case, label, started, why="workers leave the signal to the trainer, "
                                       f"which saves and exits {128 + signum} with one line")  # fmt: skip

    def ddp_terminated(self):
        """SIGTERM to a 2-process `accelerate launch`: both training processes stop at the same step and save."""
        case = "SIGTERM to a 2-process accelerate launch"
        where = "accelerate launch (cpu_ddp)"
        run_dir = self.root / "runs" / "ddp-term"
        command = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                   str(REPO / "launch_configs" / "cpu_ddp.yaml"), "--main_process_port", str(free_port()),
                   "train/run.py", *TINY, "--steps", "400", "--save-every", "100", "--output-dir", str(run_dir),
                   "--cache-dir", str(self.root / "hf-cache"), "--dataset", str(self.good), "--val-dataset", "none"]  # fmt: skip
        environment = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        wait_for(process, lambda: '"step": 3,' in read_text(run_dir / "log.jsonl"))
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        from train.config import latest_checkpoint

        latest = latest_checkpoint(run_dir)
        stops = [line for line in stderr.splitlines() if line.startswith("error: stopped by SIGTERM")]
        worker_tracebacks = stderr.count("Traceback") - stderr.count("SignalException")  # the launcher's own is torch's
        if latest is None or len(stops) != 1 or worker_tracebacks > 0 or str(latest) not in stops[0]:
            return Result(case, where, "other", f"latest {latest}, stop lines {len(stops)}, "
                          f"tracebacks {worker_tracebacks}", seconds)  # fmt: skip
        resumed = run(["-m", "accelerate.commands.launch", "--config_file", str(REPO / "launch_configs" / "cpu_ddp.yaml"),
                       "--main_process_port", str(free_port()), "train/run.py", "--resume", "latest", "--output-dir",
                       str(run_dir), "--steps", latest.name.split("-")[1].lstrip("0") or "1", "--progress", "false"])  # fmt: skip
        if resumed.returncode != 0:
            return Result(case, where, "lost", "resume failed: " + describe_failure(resumed), seconds)
        return Result(case, where, "handled", f"both processes save {latest.name} and stop, one line "
                      "`error: stopped by SIGTERM ...` (exit 143 each; the launcher itself, torch's elastic agent, "
                      "reports its SignalException and exits 1); the checkpoint resumes", seconds + resumed.seconds)  # fmt: skip

    def interrupted_export(self):
        case = "Ctrl-C during export parity"
        where = "export/to_onnx.py"
        target = self.root / "interrupted.onnx"
        command = [sys.executable, "export/to_onnx.py", "--weights", str(self.weights), "--output", str(target)]
        environment = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        wait_for(process, lambda: any(p.name.startswith(".interrupted.onnx") for p in self.root.iterdir()))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=TIMEOUT)
        outcome = Outcome(process.returncode, "", stderr, time.perf_counter() - started)
        leftovers = [p.name for p in self.root.iterdir() if p.name.startswith((".interrupted", "interrupted"))]
        if leftovers:
            return Result(case, where, "lost", f"left {leftovers}", outcome.seconds)
        if outcome.returncode == 0 and target.exists():
            return Result(case, where, "handled", "finished before the interrupt landed; complete file", outcome.seconds)
        if "Traceback" in stderr or "interrupted" not in stderr:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        return Result(case, where, "handled", "one line `interrupted: ... not written`, no partial file",
                      outcome.seconds)  # fmt: skip

    # ---- rule 2: everything read is validated ---------------------------------------------------------------

    def bad_weights(self, kind):
        """Our safetensors with metadata or tensors that must be refused, through train/evaluate.py."""
        import torch
        from safetensors.torch import save_file

        from sr_models.weights import load_model, tensors_digest

        case = {"blocks": "metadata claiming 10^8 blocks", "odd": "metadata: PAN channels odd",
                "scale": "metadata: scale the model lacks (x5)", "nan": "NaN in a weight tensor",
                "damaged": "one flipped byte in the tensor data", "int": "integer weight tensor"}[kind]  # fmt: skip
        tensors = {k: v.clone().contiguous() for k, v in load_model(self.weights).state_dict().items()}
        hyper = {"channels": 8, "upsample_channels": 8, "num_blocks": 1}
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
        path = self.root / f"weights-{kind}.safetensors"
        metadata = {"format": "sr-toolkit/1", "model": "pan", "scale": scale, "hyperparameters": json.dumps(hyper),
                    "sha256": tensors_digest(tensors)}  # fmt: skip
        save_file(tensors, str(path), metadata=metadata)
        if kind == "damaged":
            data = bytearray(path.read_bytes())
            data[-5] ^= 0x20
            path.write_bytes(bytes(data))
        outcome = run(["train/evaluate.py", "--weights", str(path), "--hr", str(self.good), "--device", "cpu"])
        return judge_refusal(case, "train/evaluate.py", outcome, names=str(path))

    def damaged_zip_pth(self):
        import torch

        from sr_models.weights import load_model

        case = "zip .pth with a flipped byte (fails its CRC)"
        path = self.root / "damaged.pth"
        torch.save(load_model(self.weights).state_dict(), path)
        import zipfile

        with zipfile.ZipFile(path) as archive:
            member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
        data = bytearray(path.read_bytes())
        name_length = int.from_bytes(data[member.header_offset + 26 : member.header_offset + 28], "little")
        extra_length = int.from_bytes(data[member.header_offset + 28 : member.header_offset + 30], "little")
        data[member.header_offset + 30 + name_length + extra_length + 4] ^= 0x20
        path.write_bytes(bytes(data))
        outcome = run(["train/evaluate.py", "--weights", str(path), "--model", "pan", "--scale", str(SCALE), "--hr",
                       str(self.good), "--device", "cpu"])  # fmt: skip
        return judge_refusal(case, "train/evaluate.py", outcome, names=str(path))

    def model_overrides_too_large(self):
        case = "--model-overrides {num_blocks: 100000000}"
        run_dir = self.root / "runs" / "huge"
        outcome = run(["train/run.py", *TINY, "--model-overrides", "{num_blocks: 100000000}", "--output-dir",
                       str(run_dir), "--steps", "1"], timeout=30)  # fmt: skip
        result = judge_refusal(case, "train/run.py", outcome, names="num_blocks")
        if result.verdict == "handled" and run_dir.exists():
            return Result(case, result.where, "other", "refused, but left a run folder", outcome.seconds)
        return result

    def mislabelled_onnx(self, claimed):
        import onnx

        from export.convert import set_metadata

        case = f"ONNX metadata scale {claimed!r} on an x{SCALE} graph"
        path = self.root / f"mislabelled-{slug(claimed) or 'empty'}.onnx"
        path.write_bytes(onnx.load(str(self.onnx)).SerializeToString())
        set_metadata(path, {"model": "pan", "scale": claimed})
        target = self.root / f"mislabelled-{slug(claimed) or 'empty'}.png"
        outcome = run(["export/upscale.py", str(path), str(self.good / "good0.png"), str(target), "--device", "cpu"])
        result = judge_refusal(case, "export/upscale.py", outcome, names=str(path))
        if result.verdict == "handled" and target.exists():
            return Result(case, result.where, "lost", "refused, yet wrote an image", outcome.seconds)
        return result

    def static_onnx(self):
        import torch

        from sr_models import create_model

        case = "ONNX model with a fixed input size"
        path = self.root / "static.onnx"
        model = create_model("pan", scale=SCALE, channels=8, upsample_channels=8, num_blocks=1).eval()
        torch.onnx.export(model, (torch.rand(1, 3, 16, 16),), str(path), dynamo=False, input_names=["lr"],
                          output_names=["sr"])  # fmt: skip
        outcome = run(["export/upscale.py", str(path), str(self.good / "good0.png"), str(self.root / "static.png"),
                       "--device", "cpu"])  # fmt: skip
        return judge_refusal(case, "export/upscale.py", outcome, names=str(path))

    def glob_characters_in_names(self):
        case = "LR/HR pairing with glob characters in names (img[1].png vs img1x4.png)"
        root = self.root / "glob-pairs"
        (root / "HR").mkdir(parents=True)
        (root / "LR").mkdir()
        save_rgb(root / "HR" / "img[1].png", base_image(seed=30))
        save_rgb(root / "LR" / f"img1x{SCALE}.png", base_image(24, 24, seed=31))  # another image's LR
        outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(root / "HR"), "--lr",
                       str(root / "LR"), "--device", "cpu"])  # fmt: skip
        return judge_refusal(case, "train/evaluate.py", outcome, names=str(root / "LR"))

    def option_check(self, label, args, names):
        case = f"option out of range: {label}"
        run_dir = self.root / "runs" / f"option-{slug(label)}"
        outcome = run(["train/run.py", *TINY, "--output-dir", str(run_dir), "--dataset", str(self.good), *args],
                      timeout=60)  # fmt: skip
        result = judge_refusal(case, "train/run.py", outcome, names=names)
        if result.verdict == "handled" and run_dir.exists():
            return Result(case, result.where, "other", "refused, but left a run folder", outcome.seconds)
        return result

    def yaml_bomb(self):
        case = "recipe YAML with nested aliases (a billion-laughs file)"
        recipe = self.root / "bomb.yaml"
        lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
        lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
        recipe.write_text("\n".join(lines) + "\n")
        outcome = run(["train/run.py", "--recipe", str(recipe), "--output-dir", str(self.root / "runs" / "bomb")],
                      timeout=60)  # fmt: skip
        return judge_refusal(case, "train/run.py", outcome, names=str(recipe))

    def resume_damaged_latest(self):
        case = "--resume latest when the newest checkpoint is damaged"
        where = "train/run.py"
        outcome, run_dir = self.train("damaged-latest", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--save-every", "2", "--stop-after", "4", steps=6)  # fmt: skip
        newest = run_dir / "checkpoints" / "step-00000004" / "model.safetensors"
        if outcome.returncode != 0 or not newest.is_file():
            return Result(case, where, "other", "set-up run failed: " + describe_failure(outcome))
        data = bytearray(newest.read_bytes())
        data[-7] ^= 0x10
        newest.write_bytes(bytes(data))
        resumed = run(["train/run.py", "--resume", "latest", "--output-dir", str(run_dir), "--progress", "false"])
        said = resumed.stdout + resumed.stderr
        if resumed.returncode != 0:
            return Result(case, where, "other", describe_failure(resumed), resumed.seconds)
        if "step-00000004/model.safetensors: damaged" not in said or "resuming from step-00000002" not in said:
            return Result(case, where, "lost", "resumed without naming the damaged checkpoint", resumed.seconds)
        return Result(case, where, "handled", "names the damaged step-4 file, says it resumes from step-2, finishes",
                      outcome.seconds + resumed.seconds)  # fmt: skip

    def resume_contradiction(self):
        case = "--resume with an override that contradicts the checkpoint (--lr)"
        outcome, run_dir = self.train("contradict", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--stop-after", "1", steps=3)  # fmt: skip
        if outcome.returncode != 0:
            return Result(case, "train/run.py", "other", "set-up run failed: " + describe_failure(outcome))
        resumed = run(["train/run.py", "--resume", "latest", "--output-dir", str(run_dir), "--lr", "0.5"])
        return judge_refusal(case, "train/run.py", resumed, names="-> 0.5")

    def more_steps_after_the_end(self):
        case = "--resume a finished run with more --steps"
        where = "train/run.py"
        outcome, run_dir = self.train("extend", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--min-lr", "1e-6", steps=3)  # fmt: skip
        resumed = run(["train/run.py", "--resume", "latest", "--output-dir", str(run_dir), "--steps", "5"])
        if outcome.returncode != 0 or resumed.returncode != 0:
            return Result(case, where, "other", describe_failure(resumed if outcome.returncode == 0 else outcome))
        rates = {r["step"]: r["lr"] for r in read_log(run_dir) if "lr" in r}
        if not (abs(rates.get(4, 1) - 1e-6) < 1e-12 and abs(rates.get(5, 1) - 1e-6) < 1e-12):
            return Result(case, where, "lost", f"learning rates after the schedule: {rates}", resumed.seconds)
        return Result(case, where, "handled", "steps 4-5 run at the schedule's final rate (1e-6), not a re-stretched "
                      "schedule", outcome.seconds + resumed.seconds)  # fmt: skip

    # ---- rule 3: one line for anything a user can cause; rule 4: say when an output is suspect ---------------

    def bad_device(self, where, device):
        case = f"--device {device}"
        if where == "export/upscale.py":
            outcome = run(["export/upscale.py", str(self.onnx), str(self.good / "good0.png"),
                           str(self.root / f"dev-{slug(device)}.png"), "--device", device])  # fmt: skip
        else:
            outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(self.good), "--device",
                           device])  # fmt: skip
        return judge_refusal(case, where, outcome, names=f"--device '{device}'")

    def suspect_output(self):
        """A model whose output explodes where the input is near white: upscale warns, naming image and region."""
        import torch

        case = "model output far outside [0, 1] in one region"
        where = "export/upscale.py"
        path = self.root / "wild.onnx"

        class Wild(torch.nn.Module):
            def forward(self, x):
                up = torch.nn.functional.interpolate(x, scale_factor=SCALE, mode="nearest")
                return up * (1 + 1e4 * (up > 0.99).float())

        torch.onnx.export(Wild(), (torch.rand(2, 3, 8, 8),), str(path), dynamo=False, input_names=["lr"],
                          output_names=["sr"], dynamic_axes={"lr": {0: "n", 2: "h", 3: "w"}, "sr": {0: "n", 2: "h", 3: "w"}})  # fmt: skip
        image = np.full((20, 30, 3), 90, np.uint8)
        image[2:5, 10:20] = 255
        source = self.root / "wild-in.png"
        save_rgb(source, image)
        outcome = run(["export/upscale.py", str(path), str(source), str(self.root / "wild-out.png"), "--device", "cpu"])
        expected = f"warning: {source}: model output far outside [0, 1]"
        region = f"x {10 * SCALE}-{20 * SCALE}, y {2 * SCALE}-{5 * SCALE}"
        if outcome.returncode != 0 or expected not in outcome.stderr or region not in outcome.stderr:
            return Result(case, where, "lost" if outcome.returncode == 0 else "other", describe_failure(outcome),
                          outcome.seconds)  # fmt: skip
        return Result(case, where, "handled", f"writes the image and warns naming it and the region ({region})",
                      outcome.seconds)  # fmt: skip

    # ---- the run ------------------------------------------------------------------------------------------

    def cases(self):
        """(label, callable) for every case."""
        cases = []
        cases.append(("odd but valid files / training", self.train_normalised))
        cases.append(("odd but valid files / validation", self.val_normalised))
        for case in FILES:
            if FILES[case][2]:
                cases.append((f"{case} / training", lambda c=case: self.train_file(c)))
                cases.append((f"{case} / validation", lambda c=case: self.val_file(c)))
            cases.append((f"{case} / evaluate", lambda c=case: self.evaluate_file(c)))
            cases.append((f"{case} / upscale", lambda c=case: self.upscale_file(c)))
        for option in ("error", "skip", "pad"):
            cases.append((f"smaller than the patch / {option}",
                          lambda o=option: self.train_small("image smaller than the patch", make_small, o)))  # fmt: skip
        cases.append(("1x1 image / training", lambda: self.train_small("1x1 image", make_one_pixel, "error")))
        cases.append(("1x1 image / training pad", self.train_one_pixel_pad))
        cases.append(("1x1 image / validation", self.val_one_pixel))
        cases.append(("1x1 image / upscale", self.upscale_one_pixel))
        cases.append(("1x1 image / evaluate", self.evaluate_one_pixel))
        for where in ("training data", "validation data", "train/evaluate.py", "export/upscale.py"):
            cases.append((f"empty folder / {where}", lambda w=where: self.empty_folder(w)))
            cases.append((f"non-images / {where}", lambda w=where: self.non_images_folder(w)))
            cases.append((f"unicode / {where}", lambda w=where: self.unicode_paths(w)))
        for where in ("training data", "validation data", "train/evaluate.py"):
            cases.append((f"mismatched pair / {where}", lambda w=where: self.mismatched_pair(w)))
        cases.append(("skip corrupt", self.train_skip_corrupt))
        cases.append(("SIGKILL and resume", self.killed_and_resumed))
        cases.append(("SIGKILL while saving", self.killed_while_saving))
        cases.append(("SIGTERM", self.terminated))
        cases.append(("diverging", self.diverging))
        cases.append(("ddp exception", self.ddp_exception))
        cases.append(("ddp nan", self.ddp_nan))
        cases.append(("ddp too small", self.ddp_too_small))
        cases += self.rule_cases()
        cases += self.validate_cases()
        cases += self.decode_cases()
        cases += self.oneline_cases()
        cases += self.destroy_cases()
        return cases

    def rule_cases(self):
        """The cases of the reliability rules (never destroy, validate everything read, one line, suspect output)."""
        cases = [("rules / output = input", lambda: self.upscale_onto_input(False)),
                 ("rules / output = input --overwrite", lambda: self.upscale_onto_input(True)),
                 ("rules / output folder = input", lambda: self.upscale_into_input_folder(False)),
                 ("rules / output folder inside input", lambda: self.upscale_into_input_folder(True))]  # fmt: skip
        for where in ("export/upscale.py", "train/evaluate.py", "export/to_onnx.py", "python -m train.data prepare"):
            cases.append((f"rules / existing output / {where}", lambda w=where: self.existing_output(w)))
        for where in ("export/upscale.py", "train/evaluate.py", "train/run.py"):
            cases.append((f"rules / output under a file / {where}", lambda w=where: self.output_under_a_file(w)))
        cases += [("rules / user's folder", self.run_into_users_folder),
                  ("rules / resume into another run", self.resume_into_another_run),
                  ("rules / two runs at once", self.two_runs_at_once),
                  ("rules / umask", self.umask_respected),
                  ("rules / second Ctrl-C", self.interrupted_twice_while_saving),
                  ("rules / SIGTERM group with workers", self.terminated_with_workers),
                  ("rules / SIGHUP group with workers", lambda: self.terminated_with_workers(signal.SIGHUP)),
                  ("rules / SIGTERM 2-process launch", self.ddp_terminated),
                  ("rules / Ctrl-C export", self.interrupted_export),
                  ("rules / zip pth", self.damaged_zip_pth),
                  ("rules / overrides too large", self.model_overrides_too_large),
                  ("rules / static onnx", self.static_onnx),
                  ("rules / glob names", self.glob_characters_in_names),
                  ("rules / yaml bomb", self.yaml_bomb),
                  ("rules / damaged latest", self.resume_damaged_latest),
                  ("rules / resume contradiction", self.resume_contradiction),
                  ("rules / more steps", self.more_steps_after_the_end),
                  ("rules / suspect output", self.suspect_output)]  # fmt: skip
        for kind in ("blocks", "odd", "scale", "nan", "damaged", "int"):
            cases.append((f"rules / weights {kind}", lambda k=kind: self.bad_weights(k)))
        for claimed in ("2", "0", "x4"):
            cases.append((f"rules / onnx scale {claimed}", lambda c=claimed: self.mislabelled_onnx(c)))
        for label, args, names in [("--warmup-fraction 0.9 --steps 3", ["--warmup-fraction", "0.9", "--steps", "3"], "warmup_fraction"),
                                   ("--steps 10**19", ["--steps", str(10**19)], "steps"),
                                   ("--lr nan", ["--lr", "nan", "--steps", "1"], "lr"),
                                   ("--batch-size -1", ["--batch-size", "-1", "--steps", "1"], "batch_size")]:  # fmt: skip
            cases.append((f"rules / {label}", lambda a=args, n=names, lab=label: self.option_check(lab, a, n)))
        for where, device in (("export/upscale.py", "cuda"), ("export/upscale.py", "gpu0"),
                              ("train/evaluate.py", "cuda:3"), ("train/evaluate.py", "tpu")):  # fmt: skip
            cases.append((f"rules / device {device} / {where}", lambda w=where, d=device: self.bad_device(w, d)))
        return cases

    def upscale_one_pixel(self):
        folder = self.root / "up-1x1"
        folder.mkdir()
        make_one_pixel(folder / "dot.png")
        outcome = run(["export/upscale.py", str(self.onnx), str(folder / "dot.png"), str(folder / "out.png"),
                       "--device", "cpu"])  # fmt: skip
        return self.judge_upscaled("1x1 image", outcome, folder / "out.png", load_rgb(folder / "dot.png"))

    def train_one_pixel_pad(self):
        """--small-images pad cannot pad an image that has no LR pixel at all: it must be named, not crash."""
        folder, _ = self.folder("train-1x1-pad", [("dot.png", make_one_pixel)])
        outcome, _ = self.train("1x1-pad", "--dataset", str(folder), "--val-dataset", "none", "--small-images", "pad")
        return judge_refusal("1x1 image", "training data (--small-images pad)", outcome, names=str(folder / "dot.png"))

    def val_one_pixel(self):
        folder = self.root / "val-1x1"
        folder.mkdir()
        save_rgb(folder / "good.png", base_image(seed=5))
        make_one_pixel(folder / "dot.png")
        outcome, _ = self.train("val-1x1", "--dataset", str(self.good), "--val-dataset", str(folder), steps=1)
        return judge_refusal("1x1 image", "validation data", outcome, names=str(folder / "dot.png"))

    def evaluate_one_pixel(self):
        folder = self.root / "eval-1x1"
        folder.mkdir()
        make_one_pixel(folder / "dot.png")
        outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(folder), "--device", "cpu"])
        return judge_refusal("1x1 image", "train/evaluate.py", outcome, names=str(folder / "dot.png"))

    # ---- validate structure, not totals; bounded training memory (docs/reliability.md) -----------------------

    def validate_cases(self):
        """Rule 3 (structure, not totals) and the training half of rule 4 (memory estimated before allocation)."""
        cases = [(f"validate / store {kind}", lambda k=kind: self.damaged_store(k))
                 for kind in ("misaligned", "overlap", "beyond", "flipped")]
        cases += [("validate / manifest edited", self.manifest_edited),
                  ("validate / checkpoint file removed with its entry", self.checkpoint_file_removed),
                  ("validate / init nan non-strict", lambda: self.bad_init_weights("nan")),
                  ("validate / init int non-strict", lambda: self.bad_init_weights("int")),
                  ("validate / recipe resume contradiction", self.recipe_resume_contradiction),
                  ("validate / metadata.jsonl in the folder", self.other_programs_files),
                  ("validate / huge patch with pad", self.huge_patch)]
        for where in ("train/run.py --init-weights", "train/evaluate.py"):
            cases.append((f"validate / pth non-string keys / {where}", lambda w=where: self.non_string_keys(w)))
        for where in ("train/evaluate.py", "train/run.py"):
            cases.append((f"validate / metric weights wrong hash / {where}", lambda w=where: self.wrong_hash_metric(w)))
        return cases

    def store_copy(self, name):
        """A copy of a decoded store of the good images (prepared once, through the prepare command)."""
        with self.lock:
            store = self.root / "good.store"
            if not store.exists():
                outcome = run(["-m", "train.data", "prepare", "--dataset", str(self.good), "--output", str(store),
                               "--store", "--scale", str(SCALE), "--cache-dir", str(self.root / "hf-cache")])
                if outcome.returncode != 0:
                    raise RuntimeError("preparing the store failed: " + describe_failure(outcome))
        copy = self.root / name
        shutil.copytree(store, copy)
        return copy, json.loads((copy / "store.json").read_text())

    def damaged_store(self, kind):
        case = {"misaligned": "store index edited: HR no longer 4 x LR (same byte totals)",
                "overlap": "store index edited: an image's offset overlaps the previous one",
                "beyond": "store index edited: the last image ends outside the file",
                "flipped": "store data: one flipped byte in hr.u8"}[kind]  # fmt: skip
        store, index = self.store_copy(f"store-{kind}")
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
            data = bytearray((store / "hr.u8").read_bytes())
            data[images[1]["hr_offset"] + 100] ^= 0x01
            (store / "hr.u8").write_bytes(bytes(data))
            names = f"{store / 'hr.u8'}: image 1"
        if kind != "flipped":
            (store / "store.json").write_text(json.dumps(index))
        outcome, run_dir = self.train(f"store-{kind}", "--dataset", str(store), "--val-dataset", "none")
        result = judge_refusal(case, "train/run.py (decoded store)", outcome, names=names)
        if result.verdict == "handled" and (run_dir / "model.safetensors").exists():
            return Result(case, result.where, "lost", "refused, but final weights were written", outcome.seconds)
        return result

    def manifest_edited(self):
        case = "checkpoint whose manifest was edited to drop a damaged file's entry"
        outcome, run_dir = self.train("manifest", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--stop-after", "1", steps=3)  # fmt: skip
        if outcome.returncode != 0:
            return Result(case, "train/run.py --resume", "other", "set-up run failed: " + describe_failure(outcome))
        checkpoint = run_dir / "checkpoints" / "step-00000001"
        optimizer = checkpoint / "optimizer.bin"
        data = bytearray(optimizer.read_bytes())
        data[len(data) // 2] ^= 0x01
        optimizer.write_bytes(bytes(data))
        manifest = json.loads((checkpoint / "manifest.json").read_text())
        del manifest["optimizer.bin"]  # the lie: the damaged file is no longer listed, the totals of the rest hold
        (checkpoint / "manifest.json").write_text(json.dumps(manifest))
        resumed = run(["train/run.py", "--resume", "latest", "--output-dir", str(run_dir)])
        return judge_refusal(case, "train/run.py --resume", resumed, names=str(optimizer))

    def checkpoint_file_removed(self):
        case = "checkpoint with a file removed together with its manifest entry"
        outcome, run_dir = self.train("removed", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--stop-after", "1", steps=3)  # fmt: skip
        if outcome.returncode != 0:
            return Result(case, "train/run.py --resume", "other", "set-up run failed: " + describe_failure(outcome))
        checkpoint = run_dir / "checkpoints" / "step-00000001"
        manifest = json.loads((checkpoint / "manifest.json").read_text())
        del manifest["scheduler.bin"]  # the manifest no longer lies about a file: it is simply gone from both
        (checkpoint / "manifest.json").write_text(json.dumps(manifest))
        (checkpoint / "scheduler.bin").unlink()
        resumed = run(["train/run.py", "--resume", "latest", "--output-dir", str(run_dir)])
        return judge_refusal(case, "train/run.py --resume", resumed, names=str(checkpoint / "scheduler.bin"))

    def tiny_state(self):
        from sr_models.weights import load_model

        return {k: v.clone().contiguous() for k, v in load_model(self.weights).state_dict().items()}

    def bad_init_weights(self, kind):
        import torch

        case = {"nan": "init weights holding NaN (--init-strict false)",
                "int": "init weights with an integer tensor (--init-strict false)"}[kind]  # fmt: skip
        state = self.tiny_state()
        if kind == "nan":
            state["tail.weight"][0, 0, 0, 0] = float("nan")
        else:
            state["head.weight"] = state["head.weight"].to(torch.int32)
        path = self.root / f"init-{kind}.pth"
        torch.save({"params_ema": state}, path)  # BasicSR's wrapper: unwrapped and checked alike
        outcome, run_dir = self.train(f"init-{kind}", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--init-weights", str(path), "--init-strict", "false")  # fmt: skip
        return judge_refusal(case, "train/run.py --init-weights", outcome, names=str(path))

    def non_string_keys(self, where):
        import torch

        case = ".pth whose state_dict has non-string keys"
        path = self.root / "int-keys.pth"
        with self.lock:
            if not path.exists():
                torch.save({**self.tiny_state(), 7: torch.zeros(1)}, path)
        if where == "train/evaluate.py":
            outcome = run(["train/evaluate.py", "--weights", str(path), "--model", "pan", "--scale", str(SCALE),
                           "--hr", str(self.good), "--device", "cpu"])  # fmt: skip
        else:
            outcome, _ = self.train("int-keys", "--dataset", str(self.good), "--val-dataset", "none", "--init-weights",
                                    str(path), "--init-strict", "false")  # fmt: skip
        return judge_refusal(case, where, outcome, names=str(path))

    def wrong_hash_metric(self, where):
        import torch

        case = "metric weights given locally with a wrong hash (pt_inception-...-6726825d.pth)"
        folder = self.root / f"metric-weights-{slug(where)}"
        folder.mkdir()
        path = folder / "pt_inception-2015-12-05-6726825d.pth"
        torch.save({"stand-in": torch.zeros(4)}, path)
        env = {"TORCH_HOME": str(self.root / "torch-home")}  # not the user's hub cache
        if where == "train/evaluate.py":
            outcome = run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(self.good), "--metrics",
                           "psnr,fid", "--metrics-weights", str(folder), "--device", "cpu"], env=env)  # fmt: skip
        else:
            run_dir = self.root / "runs" / "metric-hash"
            outcome = run(["train/run.py", *TINY, "--steps", "1", "--output-dir", str(run_dir), "--dataset",
                           str(self.good), "--val-dataset", str(self.good), "--val-metrics", "psnr,fid",
                           "--cache-dir", str(self.root / "hf-cache")],
                          env={**env, "SR_METRICS_WEIGHTS": str(folder)})  # fmt: skip
        return judge_refusal(case, where, outcome, names=str(path))

    def recipe_resume_contradiction(self):
        case = "a recipe's resume: with a key that contradicts the checkpoint (lr)"
        outcome, run_dir = self.train("recipe-resume", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--stop-after", "1", steps=3)  # fmt: skip
        if outcome.returncode != 0:
            return Result(case, "train/run.py --recipe", "other", "set-up run failed: " + describe_failure(outcome))
        before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        recipe = self.root / "resume-recipe.yaml"
        recipe.write_text(f"resume: latest\noutput_dir: {run_dir}\nlr: 0.5\n")
        resumed = run(["train/run.py", "--recipe", str(recipe)])
        result = judge_refusal(case, "train/run.py --recipe", resumed, names="-> 0.5")
        after = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
        if result.verdict == "handled" and after != before:
            return Result(case, result.where, "lost", "refused, but the run folder changed", resumed.seconds)
        return result

    def other_programs_files(self):
        case = "metadata.jsonl (listing 1 image), metadata.csv, Thumbs.db, .DS_Store, __MACOSX/, .xmp in the photo folder"
        where = "training data"
        folder, _ = self.folder("other-programs")
        (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "good0.png", "text": "x"}) + "\n")
        (folder / "metadata.csv").write_text("file_name,label\ngood1.png,cat\n")
        (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
        (folder / "__MACOSX").mkdir()
        (folder / "__MACOSX" / "._good0.png").write_bytes(b"\0\5\26\7")
        (folder / "good0.xmp").write_text("<x:xmpmeta/>")
        outcome, run_dir = self.train("other-programs", "--dataset", str(folder), "--val-dataset", "none",
                                      "--repeat-images", "false")  # fmt: skip
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        start = read_log(run_dir)[0]
        if start.get("train_images") != 3:
            return Result(case, where, "lost", f"trained on {start.get('train_images')} of the 3 images", outcome.seconds)
        if "ignored" not in outcome.stderr:
            return Result(case, where, "other", "trained on every image, but said nothing of the ignored files")
        return Result(case, where, "handled", "trains on all 3 images; one line names the 6 files ignored",
                      outcome.seconds)  # fmt: skip

    def huge_patch(self):
        case = "--lr-patch-size 4096 --small-images pad"
        outcome, run_dir = self.train("huge-patch", "--dataset", str(self.good), "--val-dataset", "none",
                                      "--small-images", "pad", "--lr-patch-size", "4096", "--batch-size", "8")
        result = judge_refusal(case, "train/run.py", outcome, names="--lr-patch-size")
        if result.verdict == "handled" and run_dir.exists():
            return Result(case, result.where, "lost", "refused, but a run folder was made", outcome.seconds)
        return result

    # --- one line (issue 19, rule 5) and bounded ONNX opening (rule 4, models): tests/test_one_line.py tests them
    def oneline_cases(self):
        cases = [("one line / deep YAML recipe", self.deep_yaml_recipe),
                 ("one line / deep --model-overrides", self.deep_model_overrides),
                 ("one line / deep JSON in weights metadata", self.deep_json_metadata),
                 ("one line / --opset 16", lambda: self.opset_out_of_range(16)),
                 ("one line / --opset 21", lambda: self.opset_out_of_range(21)),
                 ("one line / sr-launch, 1 process", lambda: self.launched_user_error(1)),
                 ("one line / sr-launch, 2 processes", lambda: self.launched_user_error(2))]
        cases.append(("one line / data error in a DataLoader worker", self.worker_data_error))
        for where in ("export/upscale.py", "train/evaluate.py"):
            cases.append((f"one line / ONNX failing on an image / {where}", lambda w=where: self.onnx_fails_on_image(w)))
            cases.append((f"one line / ONNX with a 2^62-trip Loop / {where}", lambda w=where: self.looping_onnx(w)))
            for computed in (False, True):
                cases.append((f"one line / ONNX asking 12 GB on its probe, {'computed' if computed else 'constant'} "
                              f"scales / {where}", lambda w=where, c=computed: self.blowing_up_onnx(w, c)))
        return cases

    def judge_one_line(self, case, where, outcome, *, names):
        """judge_refusal, and stderr (progress bars aside) is that one line and nothing else."""
        result = judge_refusal(case, where, outcome, names=names)
        shown = [line for line in re.split(r"[\r\n]", outcome.stderr)
                 if line.strip() and not re.search(r"\d+/\d+ \[[^]]*/s\]", line)]  # fmt: skip
        if result.verdict == "handled" and len(shown) != 1:
            return Result(case, where, "other", f"{len(shown)} lines on stderr, not one: {shown[0][:120]}",
                          outcome.seconds)  # fmt: skip
        return result

    def worker_data_error(self):
        """Decoded in a worker, the error reaches the trainer wrapped in the worker's traceback; the workers ignore
        SIGTERM, and once kept the process from ending."""
        folder, _ = self.folder("train-worker-truncated", [("cut.png", make_truncated)])
        outcome, _ = self.train("worker-truncated", "--dataset", str(folder), "--val-dataset", "none",
                                "--num-workers", "1", "--cache-images", "false", steps=20)  # fmt: skip
        return self.judge_one_line("truncated PNG decoded in a DataLoader worker", "train/run.py", outcome,
                                   names=str(folder / "cut.png"))  # fmt: skip

    def deep_yaml_recipe(self):
        recipe = self.root / "deep.yaml"
        recipe.write_text("steps: " + "[" * 5000 + "]" * 5000 + "\n")
        outcome = run(["train/run.py", "--recipe", str(recipe), "--output-dir", str(self.root / "runs" / "deep")],
                      timeout=60)  # fmt: skip
        return self.judge_one_line("recipe YAML nested 5000 deep", "train/run.py", outcome, names=str(recipe))

    def deep_model_overrides(self):
        outcome = run(["train/run.py", "--model-overrides", "{a: " * 3000 + "}" * 3000, "--output-dir",
                       str(self.root / "runs" / "deep-overrides")], timeout=60)  # fmt: skip
        return self.judge_one_line("--model-overrides nested 3000 deep", "train/run.py", outcome,
                                   names="model_overrides")  # fmt: skip

    def deep_json_metadata(self):
        import torch
        from safetensors.torch import save_file

        path = self.root / "deep-json.safetensors"
        save_file({"w": torch.zeros(1)}, str(path), metadata={"format": "sr-toolkit/1", "model": "pan", "scale": "4",
                                                              "hyperparameters": "[" * 100000 + "]" * 100000})
        outcome = run(["train/evaluate.py", "--weights", str(path), "--hr", str(self.good), "--device", "cpu"])
        return self.judge_one_line("safetensors metadata JSON nested 100000 deep", "train/evaluate.py", outcome,
                                   names=str(path))  # fmt: skip

    def opset_out_of_range(self, opset):
        target = self.root / f"opset-{opset}.onnx"
        outcome = run(["export/to_onnx.py", "--weights", str(self.weights), "--output", str(target), "--opset",
                       str(opset)])  # fmt: skip
        result = self.judge_one_line(f"--opset {opset}", "export/to_onnx.py", outcome, names=f"--opset {opset}")
        if result.verdict == "handled" and target.exists():
            return Result(result.case, result.where, "lost", "refused, yet wrote the model", outcome.seconds)
        return result

    def launched_user_error(self, processes):
        recipe = self.root / f"deep-launched-{processes}.yaml"
        recipe.write_text("steps: " + "[" * 2000 + "]" * 2000 + "\n")
        config = ["--config_file", str(REPO / "launch_configs" / "cpu_ddp.yaml"), "--main_process_port",
                  str(free_port())] if processes == 2 else []  # fmt: skip
        outcome = run(["-m", "train.launch", *config, "train/run.py", "--recipe", str(recipe), "--output-dir",
                       str(self.root / "runs" / f"launched-{processes}")])  # fmt: skip
        return self.judge_one_line("user error under the launcher", f"sr-launch ({processes} process(es))", outcome,
                                   names=str(recipe))  # fmt: skip

    def onnx_graph(self, path, nodes, initializers=()):
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                                  [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["n", 3, "H", "W"])],
                                  list(initializers))  # fmt: skip
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        onnx.save(model, str(path))
        return path

    def onnx_x4(self, source, target):  # x4 by channel repetition and DepthToSpace: runs on any input size
        from onnx import helper

        return [helper.make_node("Concat", [source] * 16, [target + "_cat"], axis=1),
                helper.make_node("DepthToSpace", [target + "_cat"], [target], blocksize=4)]

    def onnx_fails_on_image(self, where):
        """Valid ONNX that runs on the small inputs probed at open and fails in onnxruntime on the real image."""
        from onnx import TensorProto as T
        from onnx import helper

        out = [helper.make_tensor_value_info("out", T.FLOAT, None)]
        fail = helper.make_graph([helper.make_node("Reshape", ["lr", "rows"], ["bad"]), *self.onnx_x4("bad", "out")],
                                 "fail", [], out)  # fmt: skip
        fine = helper.make_graph(self.onnx_x4("lr", "out"), "fine", [], out)
        path = self.onnx_graph(self.root / f"size-limit-{slug(where)}.onnx", [
            helper.make_node("Size", ["lr"], ["size"]), helper.make_node("Greater", ["size", "limit"], ["large"]),
            helper.make_node("If", ["large"], ["sr"], then_branch=fail, else_branch=fine)],
            [helper.make_tensor("limit", T.INT64, [], [1000]), helper.make_tensor("rows", T.INT64, [4], [1, 3, 7, -1])])
        image = self.good / "good0.png"
        if where == "export/upscale.py":
            target = self.root / "size-limit.png"
            outcome = run(["export/upscale.py", str(path), str(image), str(target), "--device", "cpu"])
            if target.exists():
                return Result("ONNX model failing in onnxruntime on an image", where, "lost", "wrote an image",
                              outcome.seconds)  # fmt: skip
        else:
            outcome = run(["train/evaluate.py", "--weights", str(path), "--hr", str(self.good), "--device", "cpu"])
        result = self.judge_one_line("ONNX model failing in onnxruntime on an image", where, outcome, names=str(path))
        if result.verdict == "handled" and str(image) not in error_line(outcome):
            return Result(result.case, where, "other", "one line, but the image is not named", outcome.seconds)
        return result

    def looping_onnx(self, where):
        """A 500-byte model whose Loop runs 2^62 times: refused at open, not run."""
        from onnx import TensorProto as T
        from onnx import helper

        body = helper.make_graph(
            [helper.make_node("Identity", ["c"], ["c_out"]), helper.make_node("Identity", ["v"], ["v_out"])], "b",
            [helper.make_tensor_value_info("i", T.INT64, []), helper.make_tensor_value_info("c", T.BOOL, []),
             helper.make_tensor_value_info("v", T.FLOAT, None)],
            [helper.make_tensor_value_info("c_out", T.BOOL, []), helper.make_tensor_value_info("v_out", T.FLOAT, None)])
        path = self.onnx_graph(self.root / f"loop-{slug(where)}.onnx", [
            helper.make_node("Constant", [], ["M"], value=helper.make_tensor("M", T.INT64, [], [2**62])),
            helper.make_node("Constant", [], ["go"], value=helper.make_tensor("go", T.BOOL, [], [True])),
            helper.make_node("Loop", ["M", "go", "lr"], ["looped"], body=body), *self.onnx_x4("looped", "sr")])
        if where == "export/upscale.py":
            outcome = run(["export/upscale.py", str(path), str(self.good / "good0.png"), str(self.root / "loop.png"),
                           "--device", "cpu"], timeout=60)  # fmt: skip
        else:
            outcome = run(["train/evaluate.py", "--weights", str(path), "--hr", str(self.good), "--device", "cpu"],
                          timeout=60)  # fmt: skip
        return self.judge_one_line(f"ONNX model ({path.stat().st_size} bytes) with a 2^62-trip Loop", where, outcome,
                                   names=str(path))  # fmt: skip


    def blowing_up_onnx(self, where, computed):
        """A 300-byte model that resizes its input up by 4096 and back down to x4: refused at open, in bounded
        memory (the run is capped at 16 GB of address space, so that a regression fails the case, not the machine)."""
        from onnx import TensorProto as T
        from onnx import helper

        scales = [helper.make_node("ReduceMean", ["lr"], ["mean"], keepdims=0),
                  helper.make_node("Mul", ["mean", "zero"], ["none"]), helper.make_node("Add", ["up", "none"], ["scales"])]
        path = self.onnx_graph(self.root / f"blow-up-{computed}-{slug(where)}.onnx", [
            *(scales if computed else [helper.make_node("Identity", ["up"], ["scales"])]),
            helper.make_node("Resize", ["lr", "", "scales"], ["huge"], mode="nearest"),
            helper.make_node("Resize", ["huge", "", "down"], ["sr"], mode="nearest")],
            [helper.make_tensor("up", T.FLOAT, [4], [1, 1, 4096, 4096]),
             helper.make_tensor("down", T.FLOAT, [4], [1, 1, 1 / 1024, 1 / 1024]),
             helper.make_tensor("zero", T.FLOAT, [], [0.0])])  # fmt: skip
        target = self.root / f"blow-up-{computed}.png"
        if where == "export/upscale.py":
            command = ["export/upscale.py", str(path), str(self.good / "good0.png"), str(target), "--device", "cpu"]
        else:
            command = ["train/evaluate.py", "--weights", str(path), "--hr", str(self.good), "--device", "cpu"]
        outcome = run(command, timeout=60, memory_limit=16 << 30)
        if target.exists():
            return Result("ONNX model asking 12 GB on its probe", where, "lost", "wrote an image", outcome.seconds)
        return self.judge_one_line(f"ONNX model ({path.stat().st_size} bytes) asking 12 GB on its probe", where,
                                   outcome, names=str(path))  # fmt: skip

    # ---- decode only what is meant; bounded image memory (issue 19, rules 2 and 4) ---------------------------

    def decode_cases(self):
        """Rule 2 (one opener, explicit formats, alpha/16-bit/ICC/frames on purpose) and rule 4 for images."""
        cases = []
        for kind in DECODE_REFUSED:
            for where in ("training data", "train/evaluate.py", "export/upscale.py"):
                cases.append((f"decode / {kind} / {where}", lambda k=kind, w=where: self.decode_refused(k, w)))
        for kind in ("RGBA PNG", "palette PNG with tRNS", "LA PNG"):
            cases.append((f"decode / {kind} / export/upscale.py", lambda k=kind: self.decode_alpha_kept(k)))
        cases += [("decode / RGBA PNG to .jpg / export/upscale.py", lambda: self.decode_alpha_refused(".jpg")),
                  ("decode / RGBA PNG to .bmp / export/upscale.py", lambda: self.decode_alpha_refused(".bmp")),
                  ("decode / ICC profile / export/upscale.py", self.decode_icc_kept),
                  ("decode / kinds said once / training data", lambda: self.decode_kinds_said("training data")),
                  ("decode / kinds said once / train/evaluate.py", lambda: self.decode_kinds_said("train/evaluate.py")),
                  ("decode / 9400x9400 PNG bomb / export/upscale.py", lambda: self.decode_bomb("export/upscale.py")),
                  ("decode / 9400x9400 PNG bomb / train/evaluate.py", lambda: self.decode_bomb("train/evaluate.py")),
                  ("decode / 7000x7000 BMP header bomb / export/upscale.py",
                   lambda: self.decode_bomb("export/upscale.py", bmp=True)),
                  ("decode / 7000x7000 BMP header bomb / train/evaluate.py",
                   lambda: self.decode_bomb("train/evaluate.py", bmp=True))]  # fmt: skip
        return cases

    def decode_command(self, where, folder, file):
        if where == "training data":
            return self.train(f"decode-{slug(folder.name)}", "--dataset", str(folder), "--val-dataset", "none")[0]
        if where == "train/evaluate.py":
            return run(["train/evaluate.py", "--weights", str(self.weights), "--hr", str(folder), "--device", "cpu"])
        return run(["export/upscale.py", str(self.onnx), str(file), str(folder.parent / f"{folder.name}-out.png"),
                    "--device", "cpu"])  # fmt: skip

    def decode_refused(self, kind, where):
        maker, file_name = DECODE_REFUSED[kind]
        folder, _ = self.folder(f"decode-{slug(kind)}-{slug(where)}")
        maker(folder / file_name)
        outcome = self.decode_command(where, folder, folder / file_name)
        result = judge_refusal(kind, where, outcome, names=str(folder / file_name))
        if where == "export/upscale.py" and (folder.parent / f"{folder.name}-out.png").exists():
            return Result(kind, where, "lost", "refused, but an output was written", outcome.seconds)
        return result

    def decode_alpha_kept(self, kind):
        folder = self.root / f"decode-{slug(kind)}"
        folder.mkdir()
        rgb, alpha = DECODE_ALPHA[kind](folder / "in.png")
        target = folder / "out.png"
        outcome = run(["export/upscale.py", str(self.onnx), str(folder / "in.png"), str(target), "--device", "cpu"])
        where = "export/upscale.py"
        if outcome.returncode != 0:
            return Result(kind, where, "other", describe_failure(outcome), outcome.seconds)
        from export.runtime import OnnxUpscaler

        with Image.open(target) as image:
            mode, got = image.mode, np.array(image.convert("RGBA"))
        height, width = alpha.shape
        reference = np.asarray(Image.fromarray(alpha).resize((width * SCALE, height * SCALE), Image.BICUBIC))
        if mode != "RGBA" or not np.array_equal(got[:, :, 3], reference):
            return Result(kind, where, "lost", f"output {mode}: alpha not the bicubic upscale of the input's",
                          outcome.seconds)  # fmt: skip
        if not np.array_equal(got[:, :, :3], OnnxUpscaler(self.onnx, device="cpu")(rgb)):
            return Result(kind, where, "lost", "colour differs from the model's upscale", outcome.seconds)
        return Result(kind, where, "handled", f"upscales to RGBA {got.shape[1]}x{got.shape[0]}: colour equal to the "
                      "model's, alpha equal to a bicubic upscale of the input's", outcome.seconds)  # fmt: skip

    def decode_alpha_refused(self, suffix):
        folder = self.root / f"decode-alpha-{suffix[1:]}"
        folder.mkdir()
        DECODE_ALPHA["RGBA PNG"](folder / "in.png")
        target = folder / f"out{suffix}"
        outcome = run(["export/upscale.py", str(self.onnx), str(folder / "in.png"), str(target), "--device", "cpu"])
        result = judge_refusal(f"RGBA PNG to {suffix}", "export/upscale.py", outcome, names=str(target))
        if target.exists():
            return Result(result.case, result.where, "lost", "refused, but the output was written", outcome.seconds)
        return result

    def decode_icc_kept(self):
        case, where = "ICC profile (Adobe RGB)", "export/upscale.py"
        folder = self.root / "decode-icc"
        folder.mkdir()
        icc = adobe_rgb_profile()
        Image.fromarray(base_image(32, 32, seed=30)).save(folder / "in.jpg", icc_profile=icc, quality=95)
        outcome = run(["export/upscale.py", str(self.onnx), str(folder / "in.jpg"), str(folder / "out.png"),
                       "--device", "cpu"])  # fmt: skip
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        with Image.open(folder / "out.png") as image:
            carried = image.info.get("icc_profile")
        if carried != icc:
            return Result(case, where, "lost", "the output does not carry the input's ICC profile", outcome.seconds)
        return Result(case, where, "handled", "upscales; the output carries the input's ICC profile, byte for byte",
                      outcome.seconds)  # fmt: skip

    def decode_kinds_said(self, where):
        """Alpha, palette tRNS, 16-bit, ICC and several frames in one folder: used, and each kind said in one line."""
        case = "alpha, tRNS, 16-bit, ICC, frames in one folder"
        folder, _ = self.folder(f"decode-kinds-{slug(where)}")
        for kind, maker in DECODE_ALPHA.items():
            maker(folder / f"{slug(kind)}.png")
        make_sixteen_bit(folder / "deep.png")
        from PIL import ImageCms

        Image.fromarray(base_image(seed=31)).save(folder / "icc.jpg", icc_profile=adobe_rgb_profile(), quality=95)
        srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
        Image.fromarray(base_image(seed=34)).save(folder / "srgb.png", icc_profile=srgb)  # sRGB: nothing to say
        frames = [Image.fromarray(base_image(seed=32)), Image.fromarray(base_image(seed=33))]
        frames[0].save(folder / "anim.png", save_all=True, append_images=frames[1:])
        outcome = self.decode_command(where, folder, None)
        if outcome.returncode != 0:
            return Result(case, where, "other", describe_failure(outcome), outcome.seconds)
        said = [line for line in outcome.stderr.splitlines() if line.startswith("warning: ")]
        wanted = {"have alpha": 3, "are 16-bit": 1, "ICC profile": 1, "several frames": 1}
        missing = [w for w, n in wanted.items() if sum(w in line and f" {n} file(s) " in line for line in said) != 1]
        if missing:
            return Result(case, where, "lost", f"not said once with its count: {', '.join(missing)}", outcome.seconds)
        if where == "training data":
            start = read_log(self.root / "runs" / f"decode-{slug(folder.name)}")[0]
            if start["train_images"] != 3 + 7:
                return Result(case, where, "lost", f"trained on {start['train_images']} images, not 10", outcome.seconds)
        return Result(case, where, "handled", f"{'trains' if where == 'training data' else 'scores'} on every image; "
                      "one warning line per kind: `" + shorten(said[0]) + "`", outcome.seconds)  # fmt: skip

    def decode_bomb(self, where, bmp=False):
        case = "7000x7000 BMP header (118 bytes)" if bmp else "9400x9400 PNG of about 260 KB"
        folder = self.root / f"decode-bomb-{'bmp' if bmp else 'png'}-{slug(where)}"
        folder.mkdir()
        file = folder / ("bomb.bmp" if bmp else "bomb.png")
        (make_bmp_bomb if bmp else make_png_bomb)(file)
        outcome = self.decode_command(where, folder, file)
        result = judge_refusal(case, where, outcome, names=str(file))
        line = error_line(outcome) or ""
        if result.verdict == "handled" and not ("GiB" in line and "--max-memory" in line):
            return Result(case, where, "other", f"refused without the size and the option: {line[:160]}",
                          outcome.seconds)  # fmt: skip
        return result


    # ---- issue 19 rule 1 (never destroy) and rule 4 for writers: sr_models/files.py ---------------------------

    DESTROY_WRITERS = ("export/upscale.py", "train/evaluate.py", "export/to_onnx.py", "python -m train.data prepare")
    # What to make slow (or fail) in a writer once its partial output exists: a wrapper patches one function.
    DESTROY_HOOKS = {
        "export/upscale.py": ("export.upscale", "PIL.Image", "Image.save", True),
        "train/evaluate.py": ("train.evaluate", "train.evaluate", "score", False),
        "export/to_onnx.py": ("export.to_onnx", "export.to_onnx", "check_parity", False),
        "python -m train.data prepare": ("train.data.subimages", "train.data.store", "image_digest", False),
    }

    def destroy_cases(self):
        cases = []
        for where in self.DESTROY_WRITERS:
            cases.append((f"destroy / overwrite a user's file / {where}", lambda w=where: self.destroy_users_file(w)))
            cases.append((f"destroy / output is a link / {where}", lambda w=where: self.destroy_output_link(w)))
            cases.append((f"destroy / two writers / {where}", lambda w=where: self.destroy_two_writers(w)))
            cases.append((f"destroy / SIGTERM / {where}", lambda w=where: self.destroy_signal(w, signal.SIGTERM)))
            cases.append((f"destroy / SIGKILL leftovers / {where}", lambda w=where: self.destroy_killed(w)))
        for where in ("export/upscale.py", "python -m train.data prepare"):
            cases.append((f"destroy / SIGHUP / {where}", lambda w=where: self.destroy_signal(w, signal.SIGHUP)))
        for where in ("export/upscale.py", "export/to_onnx.py", "python -m train.data prepare"):
            cases.append((f"destroy / full disk / {where}", lambda w=where: self.destroy_full_disk(w)))
        for where, how in (("export/upscale.py", "hard link"), ("export/upscale.py", "symbolic link"),
                           ("train/evaluate.py", "image in --hr"), ("train/evaluate.py", "hard link"),
                           ("train/evaluate.py", "symbolic link"), ("train/evaluate.py", "weights"),
                           ("export/to_onnx.py", "hard link"), ("export/to_onnx.py", "inside --parity-data"),
                           ("python -m train.data prepare", "symbolic link"),
                           ("python -m train.data prepare", "holding --dataset"),
                           ("export/upscale.py", "folder holding the input folder")):  # fmt: skip
            cases.append((f"destroy / output is an input ({how}) / {where}",
                          lambda w=where, h=how: self.destroy_onto_input(w, h)))  # fmt: skip
        for where in ("export/upscale.py", "train/evaluate.py", "export/to_onnx.py"):
            cases.append((f"destroy / a lone output into a folder being upscaled / {where}",
                          lambda w=where: self.destroy_into_a_folder_being_written(w)))  # fmt: skip
        for signum, group in ((signal.SIGINT, True), (signal.SIGTERM, False)):
            cases.append((f"destroy / {signum.name} to the {'group' if group else 'command'} with worker processes / "
                          "python -m train.data prepare", lambda s=signum, g=group: self.destroy_prepare_workers(s, g)))
        cases.append(("destroy / a report onto our model / train/evaluate.py", self.destroy_report_onto_model))
        cases.append(("destroy / run lock is a link / train/run.py", self.destroy_run_lock_link))
        cases.append(("destroy / output is an input (run folder inside --dataset) / train/run.py",
                      self.destroy_run_inside_data))  # fmt: skip
        return cases

    def destroy_command(self, where, out, *, inputs):
        """The writer's command line writing `out`, reading the image folder `inputs` (and the tiny model)."""
        if where == "export/upscale.py":
            source = inputs if inputs.is_dir() else inputs
            return ["export/upscale.py", str(self.onnx), str(source), str(out), "--device", "cpu"]
        if where == "train/evaluate.py":
            return ["train/evaluate.py", "--weights", str(self.weights), "--hr", str(inputs), "--json", str(out),
                    "--device", "cpu"]  # fmt: skip
        if where == "export/to_onnx.py":
            return ["export/to_onnx.py", "--weights", str(self.weights), "--output", str(out), "--parity-data",
                    str(inputs)]  # fmt: skip
        return ["-m", "train.data", "prepare", "--dataset", str(inputs), "--output", str(out), "--scale", str(SCALE),
                "--store", "--cache-dir", str(self.root / "hf-cache")]  # fmt: skip

    def destroy_place(self, where, label):
        """(a fresh folder for the case, its copy of the good images, the output's name for this writer)."""
        place = self.root / "destroy" / f"{slug(label)}-{slug(where)}"
        place.mkdir(parents=True)
        photos = place / "photos"
        shutil.copytree(self.good, photos)
        name = {"export/upscale.py": "out.png", "train/evaluate.py": "report.json",
                "export/to_onnx.py": "model.onnx"}.get(where, "prepared")  # fmt: skip
        return place, photos, place / name

    def destroy_inputs(self, where, photos, out):
        """The input a writer's command reads: the upscaled image, or the folder."""
        return photos / "good0.png" if where == "export/upscale.py" and out.suffix else photos

    def destroy_everything(self, place):
        """Every file of the case's folder (links as links): what nothing may change."""
        found = {}
        for entry in [place, *place.rglob("*")]:
            if entry.is_symlink():
                found[entry] = os.readlink(entry)
            elif entry.is_file():
                found[entry] = entry.read_bytes()
        return found

    def destroy_judge(self, case, where, outcome, before, place, *, names, says):
        """Refused in one line naming `names` and saying `says`, with every file of `place` as it was."""
        changed = [str(p) for p, data in before.items() if self.destroy_everything(place).get(p) != data]
        if changed:
            return Result(case, where, "lost", f"changed or removed: {', '.join(changed)[:120]}", outcome.seconds)
        result = judge_refusal(case, where, outcome, names=names)
        if result.verdict == "handled" and says not in error_line(outcome):
            return Result(case, where, "other", f"refused without saying {says!r}: {error_line(outcome)[:120]}",
                          outcome.seconds)  # fmt: skip
        if result.verdict == "handled":
            result.what += "; nothing changed"
        return result

    def destroy_users_file(self, where):
        case = "--overwrite on an existing output the toolkit did not write"
        place, photos, out = self.destroy_place(where, "users")
        if where == "export/upscale.py":
            Image.fromarray(base_image(seed=30)).save(out)  # a real PNG of the user's: no mark of ours
        elif where == "train/evaluate.py":
            out.write_text(json.dumps({"model": "my notes"}) + "\n")
        elif where == "export/to_onnx.py":
            import onnx

            model = onnx.load(str(self.onnx))
            model.producer_name = "pytorch"  # someone else's export
            onnx.save(model, str(out))
        else:  # the issue's example: prepare --output <any folder> --overwrite deleted it
            out.mkdir()
            (out / "thesis.tex").write_text("years of work\n")
        before = self.destroy_everything(place)
        outcome = run([*self.destroy_command(where, out, inputs=self.destroy_inputs(where, photos, out)),
                       "--overwrite"])  # fmt: skip
        result = self.destroy_judge(case, where, outcome, before, place, names=str(out),
                                    says="not written by this toolkit")  # fmt: skip
        if result.verdict == "handled" and "pass --overwrite" in error_line(outcome):
            return Result(case, where, "other", "the refusal suggests --overwrite", outcome.seconds)
        return result

    def destroy_report_onto_model(self):
        case = "--json onto a model this toolkit exported (--overwrite)"
        where = "train/evaluate.py"
        place, photos, _ = self.destroy_place(where, "report-onto-model")
        model = place / "model.onnx"
        shutil.copy(self.onnx, model)  # ours: the mark is in the file, but it is a model, not a report
        before = self.destroy_everything(place)
        outcome = run([*self.destroy_command(where, model, inputs=photos), "--overwrite"])
        return self.destroy_judge(case, where, outcome, before, place, names=str(model),
                                  says="not written by this toolkit")  # fmt: skip

    def destroy_output_link(self, where):
        case = "output path is a symbolic link to a user's file (--overwrite)"
        place, photos, out = self.destroy_place(where, "link")
        users = place / f"users{out.suffix}"
        if out.suffix:
            users.write_bytes(b"the user's own file\n")
        else:
            users.mkdir()
            (users / "thesis.tex").write_text("years of work\n")
        out.symlink_to(users)
        before = self.destroy_everything(place)
        outcome = run([*self.destroy_command(where, out, inputs=self.destroy_inputs(where, photos, out)),
                       "--overwrite"])  # fmt: skip
        return self.destroy_judge(case, where, outcome, before, place, names=str(out), says="symbolic link")

    def destroy_onto_input(self, where, how):
        case = f"output is an input: {how} (--overwrite)"
        place, photos, out = self.destroy_place(where, f"input-{how}")
        inputs = self.destroy_inputs(where, photos, out)
        if how == "hard link":
            os.link(photos / "good0.png" if where != "export/to_onnx.py" else self.weights, out)
        elif how == "symbolic link":
            out.symlink_to(photos if where == "python -m train.data prepare" else photos / "good0.png")
        elif how == "image in --hr":  # the issue's example: evaluate.py --json HR/baby.png --overwrite
            out = photos / "good1.png"
        elif how == "weights":
            out = self.weights
        elif how == "inside --parity-data":
            out = photos / "model.onnx"
        elif how == "holding --dataset":
            out = place
        else:  # an upscale folder run into the folder that holds its input folder
            out, inputs = place, photos
        before = {**self.destroy_everything(place), self.weights: self.weights.read_bytes()}
        outcome = run([*self.destroy_command(where, out, inputs=inputs), "--overwrite"])
        changed = [str(p) for p, data in before.items() if p != self.weights and
                   self.destroy_everything(place).get(p) != data]  # fmt: skip
        if self.weights.read_bytes() != before.pop(self.weights) or changed:
            return Result(case, where, "lost", f"changed: {', '.join(changed)[:120] or self.weights}",
                          outcome.seconds)  # fmt: skip
        return self.destroy_judge(case, where, outcome, before, place, names=str(out), says="input")

    def destroy_run_lock_link(self):
        case = "run folder whose .sr-toolkit-run.lock is a link to a user's file"
        where = "train/run.py"
        place = self.root / "destroy" / "run-lock"
        (place / "run").mkdir(parents=True)
        users = place / "users.txt"
        users.write_text("the user's own file\n")
        (place / "run" / ".sr-toolkit-run.lock").symlink_to(users)
        before = self.destroy_everything(place)
        outcome = run(["train/run.py", *TINY, "--steps", "1", "--output-dir", str(place / "run"), "--dataset",
                       str(self.good), "--val-dataset", "none", "--cache-dir", str(self.root / "hf-cache")])  # fmt: skip
        return self.destroy_judge(case, where, outcome, before, place, names=".sr-toolkit-run.lock",
                                  says="symbolic link")  # fmt: skip

    def destroy_run_inside_data(self):
        case = "new run folder inside its --dataset folder"
        where = "train/run.py"
        place = self.root / "destroy" / "run-inside"
        shutil.copytree(self.good, place / "photos")
        before = self.destroy_everything(place)
        run_dir = place / "photos" / "run"  # its samples/ would be trained on by the next run of that folder
        outcome = run(["train/run.py", *TINY, "--steps", "1", "--output-dir", str(run_dir), "--dataset",
                       str(place / "photos"), "--val-dataset", "none", "--cache-dir", str(self.root / "hf-cache")])
        result = self.destroy_judge(case, where, outcome, before, place, names=str(run_dir), says="input folder")
        if result.verdict == "handled" and run_dir.exists():
            return Result(case, where, "other", "refused, but the run folder was made", outcome.seconds)
        return result

    def destroy_writer(self, where, command, *, action="hold"):
        """The writer's own main, run by a wrapper that holds (sleeps) or fails (a full disk) at the hooked
        function, once the command has begun writing; prints `writing` when it gets there."""
        module, patched, name, after = self.DESTROY_HOOKS[where]
        owner, _, attribute = name.rpartition(".")
        target = f"m.{owner}" if owner else "m"
        fault = "time.sleep(120)" if action == "hold" else "raise OSError(28, 'No space left on device')"
        script = (f"import sys, time\nimport {patched} as m\noriginal = {target}.{attribute}\n"
                  "def hooked(*a, **k):\n"
                  + ("    result = original(*a, **k)\n" if after else "")
                  + f"    print('writing', flush=True)\n    {fault}\n"
                  + ("    return result\n" if after else "    return original(*a, **k)\n")
                  + f"{target}.{attribute} = hooked\nfrom {module} import main\nsys.argv[0] = 'writer'\n"
                  f"main(sys.argv[1:])\n")  # fmt: skip
        args = command[2:] if command[0] == "-m" else command[1:]
        environment = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"}
        return subprocess.Popen([sys.executable, "-c", script, *args], cwd=REPO, env=environment, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip

    def destroy_wait_writing(self, process):
        line = process.stdout.readline().strip()
        return line == "writing"

    def destroy_leftovers(self, place, out):
        """Hidden files and folders of ours left beside `out` (temporaries, lock files)."""
        return sorted(p.name for p in place.iterdir() if p.name.startswith(f".{out.name}.")
                      or p.name.startswith(f"..{out.name}."))  # fmt: skip

    def destroy_signal(self, where, signum):
        case = f"{signal.Signals(signum).name} while the output is being written"
        place, photos, out = self.destroy_place(where, f"signal-{signum}")
        started = time.perf_counter()
        process = self.destroy_writer(where, self.destroy_command(where, out, inputs=self.destroy_inputs(
            where, photos, out)))  # fmt: skip
        if not self.destroy_wait_writing(process):
            process.kill()
            return Result(case, where, "other", f"the writer never began: {process.communicate()[1][-200:]}")
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=TIMEOUT)
        seconds = time.perf_counter() - started
        lines = [line for line in stderr.splitlines() if line.strip()]
        left = self.destroy_leftovers(place, out) + ([out.name] if out.exists() else [])
        if left:
            return Result(case, where, "lost", f"left {left}", seconds)
        if process.returncode != 128 + signum or len(lines) != 1 or not lines[0].startswith("interrupted: "):
            return Result(case, where, "other", f"exit {process.returncode}: {stderr.strip()[-200:]}", seconds)
        return Result(case, where, "handled", f"exit {process.returncode}, one line `{shorten(lines[0], str(out))}`, "
                      "no partial file", seconds)  # fmt: skip

    def destroy_full_disk(self, where):
        case = "disk full while the output is being written"
        place, photos, out = self.destroy_place(where, "full")
        started = time.perf_counter()
        process = self.destroy_writer(where, self.destroy_command(where, out, inputs=self.destroy_inputs(
            where, photos, out)), action="fail")  # fmt: skip
        stdout, stderr = process.communicate(timeout=TIMEOUT)
        outcome = Outcome(process.returncode, stdout, stderr, time.perf_counter() - started)
        left = self.destroy_leftovers(place, out) + ([out.name] if out.exists() else [])
        if left:
            return Result(case, where, "lost", f"left {left}", outcome.seconds)
        result = judge_refusal(case, where, outcome, names=str(out))
        if result.verdict == "handled":
            result.what += "; nothing left behind"
        return result

    def destroy_killed(self, where):
        case = "SIGKILL while writing, then the same command again"
        place, photos, out = self.destroy_place(where, "killed")
        command = self.destroy_command(where, out, inputs=self.destroy_inputs(where, photos, out))
        started = time.perf_counter()
        process = self.destroy_writer(where, command)
        if not self.destroy_wait_writing(process):
            process.kill()
            return Result(case, where, "other", f"the writer never began: {process.communicate()[1][-200:]}")
        process.kill()
        process.communicate()
        left = self.destroy_leftovers(place, out)
        users = {place / f".{out.name}.notes": b"the user's", place / f"{out.name}.123.partial": b"the user's"}
        for path, data in users.items():
            path.write_bytes(data)
        again = run(command)
        seconds = time.perf_counter() - started + again.seconds
        if again.returncode != 0:
            return Result(case, where, "other", describe_failure(again), seconds)
        still = [name for name in self.destroy_leftovers(place, out) if name != f".{out.name}.notes"]
        if still or any(path.read_bytes() != data for path, data in users.items()):
            return Result(case, where, "lost", f"after the second run: {still or 'a user file changed'}", seconds)
        return Result(case, where, "handled", f"the killed run left {len(left)} hidden file(s) of ours "
                      f"({', '.join(n.replace(str(process.pid), 'PID') for n in left)[:80]}); the next run removed "
                      "them, and only them", seconds)  # fmt: skip

    def destroy_two_writers(self, where):
        case = "two commands writing one output at once"
        place, photos, out = self.destroy_place(where, "two")
        if where == "export/upscale.py":  # the issue's example: two upscale runs into one output folder
            out = place / "upscaled"
        inputs = photos if where == "export/upscale.py" else self.destroy_inputs(where, photos, out)
        command = self.destroy_command(where, out, inputs=inputs)
        started = time.perf_counter()
        first = self.destroy_writer(where, command)
        try:
            if not self.destroy_wait_writing(first):
                return Result(case, where, "other", "the first writer never began")
            second = run(command)
        finally:
            first.kill()
            first.communicate()
        second.seconds = time.perf_counter() - started
        result = judge_refusal(case, where, second, names=str(out))
        if result.verdict == "handled" and f"pid {first.pid}" not in error_line(second):
            return Result(case, where, "other", f"refused without the first's pid: {error_line(second)}",
                          second.seconds)  # fmt: skip
        if result.verdict == "handled":
            result.what = result.what.replace(str(first.pid), "N")
        return result

    def destroy_into_a_folder_being_written(self, where):
        """A folder upscale is filling a folder; a single image (a report, an export) written into it is refused."""
        case = "a lone output into a folder another command is filling"
        place, photos, _ = self.destroy_place(where, "into-folder")
        folder = place / "upscaled"
        started = time.perf_counter()
        first = self.destroy_writer("export/upscale.py", self.destroy_command("export/upscale.py", folder,
                                                                              inputs=photos))  # fmt: skip
        try:
            if not self.destroy_wait_writing(first):
                return Result(case, where, "other", "the folder upscale never began")
            before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
            lone = folder / ("good0.png" if where == "export/upscale.py" else self.destroy_place(where, "name")[2].name)
            command = self.destroy_command(where, lone, inputs=photos / "good0.png" if where == "export/upscale.py"
                                           else photos)  # fmt: skip
            second = run([*command, "--overwrite"])
            after = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        finally:
            first.kill()
            first.communicate()
        second.seconds = time.perf_counter() - started
        if after != before:
            return Result(case, where, "lost", "the folder's files changed", second.seconds)
        result = judge_refusal(case, where, second, names=str(lone))
        if result.verdict == "handled" and f"pid {first.pid}" not in error_line(second):
            return Result(case, where, "other", f"refused without the holder's pid: {error_line(second)}",
                          second.seconds)  # fmt: skip
        if result.verdict == "handled":
            result.what = result.what.replace(str(first.pid), "N")
        return result

    def destroy_prepare_workers(self, signum, group):
        """prepare --num-proc 2 cutting sub-images in datasets' forked workers, stopped by a signal to the terminal's
        process group or to the command alone: one line, no process left, no partial output or cache file."""
        where = "python -m train.data prepare"
        case = f"{signum.name} to the {'process group' if group else 'command'} while 2 workers cut sub-images"
        place, photos, out = self.destroy_place(where, f"workers-{signum}-{group}")
        cache = place / "cache"
        script = ("import sys, time\nimport train.data.subimages as m\nf = m.cut_subimages\n"
                  "def slow(*a, **k):\n    print('writing', flush=True); time.sleep(120); return f(*a, **k)\n"
                  "m.cut_subimages = slow\nm.main(sys.argv[1:])\n")  # fmt: skip
        argv = ["prepare", "--dataset", str(photos), "--output", str(out), "--scale", "2", "--subimage-size", "32",
                "--subimage-step", "32", "--num-proc", "2", "--cache-dir", str(cache)]  # fmt: skip
        started = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", script, *argv], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, start_new_session=True,
                                   env={**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1"})  # fmt: skip
        try:
            if not process.stdout.readline().startswith("writing"):
                return Result(case, where, "other", "no worker began")
            (os.killpg if group else os.kill)(process.pid, signum)
            _, stderr = process.communicate(timeout=TIMEOUT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and group_alive(process.pid):
                time.sleep(0.1)
            survivors = group_alive(process.pid)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        seconds = time.perf_counter() - started
        left = self.destroy_leftovers(place, out) + ([out.name] if out.exists() else [])
        left += [p.name for p in (cache / "sr-toolkit-subimages").glob("tmp*")]
        if left:
            return Result(case, where, "lost", f"left {left}", seconds)
        lines = [line for line in stderr.splitlines() if line.strip()]
        if survivors or process.returncode != 128 + signum or len(lines) != 1 or not lines[0].startswith("interrupted: "):
            return Result(case, where, "other", f"exit {process.returncode}{', a worker survived' if survivors else ''}"
                          f": {stderr.strip()[-200:]}", seconds)  # fmt: skip
        return Result(case, where, "handled", f"exit {process.returncode}, one line `{shorten(lines[0], str(out))}`, "
                      "no process, partial folder or cache file left", seconds)  # fmt: skip


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


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

# train/run.py's main in a child process whose save_state is followed by SIGKILL when it writes the step-4
# checkpoint: the kill lands after the files are written and before the folder is renamed complete.
KILL_WHILE_SAVING = """
import os, signal, sys
import accelerate
from train.run import main
original = accelerate.Accelerator.save_state
def save_then_die(self, output_dir=None, **kwargs):
    result = original(self, output_dir, **kwargs)
    if str(output_dir).endswith("step-00000004.partial"):
        os.kill(os.getpid(), signal.SIGKILL)
    return result
accelerate.Accelerator.save_state = save_then_die
main(sys.argv[1:])
"""

# train/run.py as the program (its signal handlers installed) whose checkpoints after step 2 take 3 s to write, so
# that a second Ctrl-C lands while the stop's checkpoint is being written.
SLOW_SAVE = """
import sys, time
import accelerate
import train.run as run
original = accelerate.Accelerator.save_state
def slow(self, output_dir=None, **kwargs):
    result = original(self, output_dir, **kwargs)
    if not str(output_dir).endswith("step-00000002.partial"):
        time.sleep(3)
    return result
accelerate.Accelerator.save_state = slow
run.STOP.install()
try:
    run.main(sys.argv[1:])
except run.Interrupted as stopped:
    print(f"error: {stopped}", file=sys.stderr)
    sys.exit(128 + stopped.signum)
"""

# train/run.py with an L1 loss that is NaN from the third optimizer step on, and 3 such steps allowed in a row.
NAN_FROM_STEP_3 = """
import sys
import torch
import train.run as run
calls = []
def loss(sr, hr):
    calls.append(1)
    return torch.nn.functional.l1_loss(sr, hr) * (float("nan") if len(calls) >= 3 else 1.0)
run.LOSSES["l1"] = loss
try:
    run.main(sys.argv[1:] + ["--max-nonfinite-steps", "3"])
except ValueError as error:
    sys.exit(f"error: {error}")
"""


# Run under `accelerate launch` with 2 processes: rank 1 fails at its second loss (FAULT_MODE raise or nan).
DDP_FAULT = """
import os, sys
import torch
import train.run as run
rank, mode, calls = int(os.environ.get("RANK", 0)), os.environ["FAULT_MODE"], []
def loss(sr, hr):
    calls.append(1)
    value = torch.nn.functional.l1_loss(sr, hr)
    if rank == 1 and len(calls) == 2:
        if mode == "raise":
            raise RuntimeError("injected fault in rank 1 at step 2")
        return value * float("nan")
    return value
run.LOSSES["l1"] = loss
try:
    run.main(sys.argv[1:])
except ValueError as error:
    sys.exit(f"error: {error}")
"""


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(process, condition, timeout=TIMEOUT):
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None and not condition():
        time.sleep(0.02)


def read_text(path):
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def slug(text):
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40]


def read_log(run_dir):
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines()]


def usable_run(run_dir):
    """None when the run left final weights and a complete latest checkpoint; else what is missing."""
    run_dir = Path(run_dir)
    if not (run_dir / "model.safetensors").is_file():
        return "no model.safetensors"
    complete = [p for p in (run_dir / "checkpoints").glob("step-*") if not p.name.endswith(".partial")]
    if not complete:
        return "no complete checkpoint"
    if not (max(complete) / "config.yaml").is_file():
        return f"{max(complete)} has no config.yaml"
    return None


def bicubic_psnr_y(hr):
    """The bicubic baseline's PSNR_Y of an HR image, computed in this process: the reference figure."""
    from sr_models.metrics import image_metrics, mod_crop
    from sr_models.resize import downscale_image, upscale_bicubic

    hr = mod_crop(hr, SCALE)
    lr = downscale_image(hr, SCALE)
    return image_metrics(upscale_bicubic(lr, SCALE), hr, scale=SCALE)["psnr_y"]


def write_table(results, path):
    """A markdown table, one row per case, the rows of one kind of file together."""
    order = {case: i for i, case in enumerate(dict.fromkeys(r.case for r in results))}
    lines = ["| case | where | what happens |", "|---|---|---|"]
    for r in sorted(results, key=lambda r: order[r.case]):
        lines.append(f"| {r.case} | {r.where} | {r.what.replace('|', '/')} |")
    table = "\n".join(lines) + "\n"
    path = Path(path)
    page = path.read_text() if path.is_file() else ""
    if TABLE_BEGIN in page and TABLE_END in page:  # docs/reliability.md: the table between its markers, in place
        before, after = page.split(TABLE_BEGIN, 1)[0], page.split(TABLE_END, 1)[1]
        table = f"{before}{TABLE_BEGIN}\n{table}{TABLE_END}{after}"
    path.write_text(table)


TABLE_BEGIN, TABLE_END = "<!-- bench/faults.py table: begin -->", "<!-- bench/faults.py table: end -->"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help="run the cases whose label contains this text")
    parser.add_argument("--jobs", type=int, default=2, help="cases run at once (default 2)")
    parser.add_argument("--keep", type=Path, help="build everything in this folder and keep it")
    parser.add_argument("--table", type=Path, help="write the markdown table here: into docs/reliability.md between its "
                        "markers, or a new file")  # fmt: skip
    args = parser.parse_args(argv)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sr-faults-") as scratch:
        root = args.keep or Path(scratch)
        root.mkdir(parents=True, exist_ok=True)
        suite = Suite(root)
        cases = [(label, fn) for label, fn in suite.cases() if not args.only or args.only in label]
        results = [None] * len(cases)
        with concurrent.futures.ThreadPoolExecutor(max_workers=args.jobs) as pool:
            futures = {pool.submit(fn): i for i, (_, fn) in enumerate(cases)}
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                try:
                    found = future.result()
                except Exception as error:  # a bug in this script, not in the toolkit: still reported
                    found = Result(cases[i][0], "?", "other", f"fault script error: {error!r}")
                results[i] = found if isinstance(found, list) else [found]
                for result in results[i]:
                    print(f"[{result.verdict:>7}] {result.case} / {result.where}: {result.what} "
                          f"({result.seconds:.1f} s)", flush=True)  # fmt: skip
        results = [result for group in results for result in group]
    if args.table:
        write_table(results, args.table)
    handled = sum(r.verdict == "handled" for r in results)
    lost = sum(r.verdict == "lost" for r in results)
    print(f"wall time {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(f"{len(results)} cases, {handled} handled, {lost} lost")
    return 0 if handled == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
