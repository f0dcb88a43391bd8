"""Parity: the exported ONNX model against the PyTorch model it came from, on real images.

Each image runs at its own size (none is the 32x32 export example; photos are non-square), then a batch of
crops of every image runs as one call. Per image: PSNR of the onnxruntime output against the PyTorch output
(both clamped to [0, 1], float, peak 1; identical outputs are reported as 200 dB), and PSNR_Y of each against HR
with the evaluation protocol (uint8-rounded outputs, BT.601 Y, `scale` px border).

Thresholds: fp32 >= 60 dB and fp16 >= 45 dB against PyTorch on every image (fp32 arithmetic differences are
~1e-7, i.e. > 120 dB, so 60 dB only passes a faithful graph); int8 is lossy by design, so it is judged by what a
user sees: its PSNR_Y against HR may drop at most `max_int8_drop` dB below the PyTorch fp32 model's on every image.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from export.runtime import OnnxUpscaler
from sr_models.errors import UserError
from sr_models.evaluation.metrics import psnr, to_uint8
from sr_models.evaluation.samples import is_benchmark_root, load_benchmark_root, sample_from_hr
from sr_models.images import list_images, load_rgb

THRESHOLDS_DB = {"fp32": 60.0, "fp16": 45.0}
DEFAULT_MAX_INT8_DROP_DB = 0.3
MAX_REPORTED_DB = 200.0
BATCH_CROP = (40, 56)  # (h, w) LR crop per image in the batch check: non-square, and smaller than every photo


class ParityError(UserError, RuntimeError):  # RuntimeError: what it was before UserError
    """The exported model does not match; the message names the image and the figure."""


@dataclass
class ParityImage:
    name: str
    lr: np.ndarray  # (h, w, 3) uint8
    hr: np.ndarray | None  # (h*scale, w*scale, 3) uint8, or None when the folder has no HR


def photos_as_pairs(paths, *, scale):
    """Photos taken as HR (mod-cropped), with LR made by MATLAB bicubic as the training data is."""
    images = []
    for path in paths:
        sample = sample_from_hr(Path(path).stem, load_rgb(path), scale)
        images.append(ParityImage(sample.name, sample.lr, sample.hr))
    return images


def load_parity_images(folder=None, *, scale):
    """Images to check parity on.

    `folder` is either a benchmark folder (`HR/` plus `LR_bicubic/X{scale}/`, as ../shared/data/Set5) or a flat
    folder of photos, taken as HR with LR made by MATLAB bicubic as the training data is. None: the built-in
    parity images of export/content.py, photos (never trained on, most of them non-square) and text/graphics
    (never calibrated on).
    """
    if folder is not None and is_benchmark_root(folder):
        samples = load_benchmark_root(folder, scale=scale)
        return [ParityImage(s.name, s.lr, s.hr) for s in samples]
    if folder is None:
        from export.content import builtin_images

        return photos_as_pairs(builtin_images("parity", "photo") + builtin_images("parity", "graphics"), scale=scale)
    return photos_as_pairs(list_images(folder), scale=scale)


def float_psnr(a, b):
    """PSNR in dB of two float arrays in [0, 1] (peak 1), capped at MAX_REPORTED_DB for identical outputs."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return MAX_REPORTED_DB if mse == 0 else min(MAX_REPORTED_DB, 10 * math.log10(1 / mse))


def to_batch(images):
    """(h, w, 3) uint8 images of one size -> (N, 3, h, w) float32 in [0, 1]."""
    return np.stack([image.transpose(2, 0, 1) for image in images]).astype(np.float32) / 255


@torch.no_grad()
def check_parity(
    model, onnx_path, images, *, precision, max_int8_drop=DEFAULT_MAX_INT8_DROP_DB, device=None, progress=True
):
    """Compare `model` (PyTorch, fp32; moved to the CPU) with the ONNX file on `images`.

    Returns the report; report["passed"] is False and report["failures"] names each image below its threshold.
    Raises ParityError only when the comparison cannot be made (other scale, int8 without HR images).
    """
    model = model.cpu().float().eval()
    onnx_model = OnnxUpscaler(onnx_path, device=device, tile=None)
    scale = model.scale
    if onnx_model.scale != scale:
        raise ParityError(f"{onnx_path}: the ONNX model is x{onnx_model.scale}, the PyTorch model x{scale}")
    if precision == "int8" and not all(image.hr is not None for image in images):
        raise ParityError("int8 parity is judged on PSNR_Y against HR: --parity-data needs HR images")

    def both(batch, image):  # (N, 3, h, w) float32 -> the two outputs, clamped as every consumer clamps them
        ours = np.clip(onnx_model.run(batch, image=image), 0, 1)
        reference = model(torch.from_numpy(batch)).clamp(0, 1).numpy()
        return ours, reference

    rows = []
    for image in tqdm(images, desc=f"parity {precision}", unit="image", disable=not progress):
        ours, reference = both(to_batch([image.lr]), image.name)
        row = {
            "name": image.name,
            "size": f"{image.lr.shape[1]}x{image.lr.shape[0]}",
            "parity_psnr_db": float_psnr(ours, reference),
            "psnr_y_onnx": None,
            "psnr_y_torch": None,
        }
        if image.hr is not None:
            for key, output in (("psnr_y_onnx", ours), ("psnr_y_torch", reference)):
                row[key] = psnr(to_uint8(output[0].transpose(1, 2, 0)), image.hr, crop=scale)
        rows.append(row)

    # A batch of several: one crop of every image (several crops of one if there is a single image).
    crop_h, crop_w = BATCH_CROP
    crops = [(image.name, image.lr[:crop_h, :crop_w]) for image in images]
    crops = [c for c in crops if c[1].shape[:2] == (crop_h, crop_w)] * (3 if len(images) == 1 else 1)
    if len(crops) >= 2:
        ours, reference = both(
            to_batch([crop for _, crop in crops]), f"a batch of crops of {', '.join(name for name, _ in crops)}"
        )
        for index, (name, _) in enumerate(crops):
            rows.append(
                {
                    "name": f"{name} (batch item {index + 1}/{len(crops)})",
                    "size": f"{crop_w}x{crop_h}",
                    "parity_psnr_db": float_psnr(ours[index], reference[index]),
                    "psnr_y_onnx": None,
                    "psnr_y_torch": None,
                }
            )

    report = {
        "precision": precision,
        "model": onnx_model.spec.get("name"),
        "scale": scale,
        "min_parity_psnr_db": min(row["parity_psnr_db"] for row in rows),
        "images": rows,
    }
    report["failures"] = failures(report, max_int8_drop=max_int8_drop)  # also adds psnr_y_drop_db for int8
    report["passed"] = not report["failures"]
    if precision == "int8":
        report["max_psnr_y_drop_db"] = max(row["psnr_y_drop_db"] for row in rows if "psnr_y_drop_db" in row)
    return report


def failures(report, *, max_int8_drop):
    """One line per image below its threshold, naming the image and the figure."""
    precision, lines = report["precision"], []
    for row in report["images"]:
        if precision in THRESHOLDS_DB and row["parity_psnr_db"] < THRESHOLDS_DB[precision]:
            lines.append(
                f"{row['name']}: onnxruntime vs PyTorch {row['parity_psnr_db']:.2f} dB "
                f"< {THRESHOLDS_DB[precision]:.0f} dB required for {precision}"
            )
        if precision == "int8" and row["psnr_y_onnx"] is not None:
            drop = row["psnr_y_torch"] - row["psnr_y_onnx"]
            row["psnr_y_drop_db"] = drop
            if drop > max_int8_drop:
                lines.append(
                    f"{row['name']}: int8 PSNR_Y {row['psnr_y_onnx']:.4f} dB is {drop:.3f} dB below "
                    f"fp32 PyTorch ({row['psnr_y_torch']:.4f} dB), more than {max_int8_drop} dB"
                )
    return lines


def format_report(report):
    """The parity table for the terminal."""
    lines = [
        f"parity {report['precision']} (onnxruntime vs PyTorch; PSNR_Y vs HR with the evaluation protocol)",
        f"{'image':<34}{'size (WxH)':>11}{'ORT vs torch':>14}{'PSNR_Y onnx':>13}{'PSNR_Y torch':>14}",
    ]
    show = lambda value, width: f"{value:>{width}.4f}" if value is not None else f"{'-':>{width}}"  # noqa: E731
    for row in report["images"]:
        lines.append(
            f"{row['name']:<34}{row['size']:>11}{row['parity_psnr_db']:>11.2f} dB"
            f"{show(row['psnr_y_onnx'], 13)}{show(row['psnr_y_torch'], 14)}"
        )
    return "\n".join(lines)
