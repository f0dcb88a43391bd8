"""Which convolutions cost the most PSNR_Y when quantized to int8: measured, one conv at a time.

For each candidate conv the model is quantized with every conv int8 except that one (activation ranges are
calibrated once and reused), and scored on images with HR. A conv's *gain* is how much keeping it float lowers
the PSNR_Y drop against the fp32 model: the mean over images (the ranking) and the worst image. Keeping the convs
with the largest gains float (`to_int8(..., exclude=...)`) is what `--keep-float` in export/to_onnx.py and
bench/int8_quality.py do with the ranking.

The scan quantizes the model once per candidate (PAN has 105 convs: minutes), so it runs on small crops of the
calibration images: the images that rank the convs must not be the ones that report the result.
"""

import tempfile
from pathlib import Path

import numpy as np
import onnx
from tqdm import tqdm

from export.quantize import float_convs, large_kernel_convs, to_int8
from export.runtime import OnnxUpscaler
from sr_models.evaluation.metrics import psnr, to_uint8

SCAN_CROP = 48  # LR px: a crop per image keeps 100+ quantize-and-score rounds to minutes


def psnr_y(upscaler, images):
    """PSNR_Y (evaluation protocol) of an ONNX model's output for each ParityImage, run one by one."""
    scores = []
    for image in images:
        output = np.clip(upscaler.run(image.lr.transpose(2, 0, 1)[None].astype(np.float32) / 255), 0, 1)
        scores.append(psnr(to_uint8(output[0].transpose(1, 2, 0)), image.hr, crop=upscaler.scale))
    return np.array(scores)


def int8_drops(fp32_scores, int8_path, images):
    """PSNR_Y drop (dB) of the int8 model below the fp32 scores, per image."""
    return fp32_scores - psnr_y(OnnxUpscaler(int8_path, device="cpu", tile=None), images)


def center_crops(images, *, size=SCAN_CROP, scale):
    """A (size x size LR) centre crop of each ParityImage, HR cropped to match (smaller images kept whole)."""
    from export.parity import ParityImage

    crops = []
    for image in images:
        h, w = image.lr.shape[:2]
        ch, cw = min(size, h), min(size, w)
        y, x = (h - ch) // 2, (w - cw) // 2
        crops.append(
            ParityImage(
                image.name,
                image.lr[y : y + ch, x : x + cw],
                image.hr[y * scale : (y + ch) * scale, x * scale : (x + cw) * scale],
            )
        )
    return crops


def conv_sensitivity(fp32_path, images, *, calibration_images, candidates=None, progress=True):
    """Rank the convs of `fp32_path` by what keeping each one float buys on `images` (ParityImages with HR).

    Returns {"baseline": {"mean", "worst"} drop with every conv int8, "convs": [{"name", "mean_gain",
    "worst_gain"}] sorted by mean_gain, largest first}. `candidates`: conv names to try (default: every conv that
    to_int8 quantizes).
    """
    fp32_scores = psnr_y(OnnxUpscaler(fp32_path, device="cpu", tile=None), images)
    if candidates is None:
        large = set(large_kernel_convs(fp32_path))
        nodes = onnx.load(str(fp32_path)).graph.node
        candidates = [node.name for node in nodes if node.op_type == "Conv" and node.name not in large]
    with tempfile.TemporaryDirectory(prefix="sr-sensitivity-") as scratch:
        cache, int8 = Path(scratch) / "ranges.json", Path(scratch) / "int8.onnx"
        to_int8(fp32_path, int8, calibration_images=calibration_images, calibration_cache=cache)
        baseline = int8_drops(fp32_scores, int8, images)
        rows = []
        for name in tqdm(candidates, desc="int8 sensitivity", unit="conv", disable=not progress):
            to_int8(fp32_path, int8, calibration_images=calibration_images, exclude=[name], calibration_cache=cache)
            assert name in float_convs(int8), f"{name} was not kept float"
            drops = int8_drops(fp32_scores, int8, images)
            rows.append(
                {
                    "name": name,
                    "mean_gain": float(baseline.mean() - drops.mean()),
                    "worst_gain": float(baseline.max() - drops.max()),
                }
            )
    rows.sort(key=lambda row: row["mean_gain"], reverse=True)
    return {"baseline": {"mean": float(baseline.mean()), "worst": float(baseline.max())}, "convs": rows}
