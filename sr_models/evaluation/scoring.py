"""The scorer of the evaluation protocol: an upscaler against HR, beside bicubic upscaling of the same LR.

Below the commands that use it (train/evaluate.py, validation during training, export and the benchmarks), so
that none of them imports another to score: the figures of every report come from `score` here.
Protocol (docs/evaluation.md): uint8 RGB in, output clamped and rounded to uint8, PSNR/SSIM on the unrounded
BT.601 Y channel with `scale` pixels cut from each border; LPIPS, FID and IS through a PerceptualScorer.
"""

import numpy as np
import torch
from tqdm import tqdm

from sr_models.ensemble import self_ensemble
from sr_models.errors import UserError
from sr_models.evaluation.metrics import image_metrics, to_uint8
from sr_models.evaluation.perceptual import DEFAULT_METRICS, format_set_metrics
from sr_models.evaluation.resize import upscale_bicubic


class TorchUpscaler:
    """A PyTorch model as an upscaler of uint8 images. The caller puts the model in eval mode.

    `self_ensemble=True` averages the 8 flipped/rotated runs (sr_models.ensemble) before rounding.
    """

    def __init__(self, model, *, device="cpu", name=None, self_ensemble=False):
        self.model = model
        self.device = torch.device(device)
        self.scale = model.scale
        self.name = name or getattr(model, "spec", {}).get("name", type(model).__name__.lower())
        self.self_ensemble = self_ensemble
        if self_ensemble:
            self.name += " +self-ensemble"

    def run(self, batch):
        """(N, 3, h, w) float32 numpy in [0, 1] -> (N, 3, h*scale, w*scale) float32 numpy, unclamped."""
        parameter = next(self.model.parameters())
        return self.model(torch.from_numpy(batch).to(self.device, parameter.dtype)).float().cpu().numpy()

    @torch.inference_mode()
    def __call__(self, lr):  # (h, w, 3) uint8 -> (h*scale, w*scale, 3) uint8
        x = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255  # (1, 3, h, w)
        sr = self_ensemble(self.run, x) if self.self_ensemble else self.run(x)
        return to_uint8(sr[0].transpose(1, 2, 0))


def score(upscaler, samples, *, scale, progress=True, metrics=DEFAULT_METRICS, perceptual=None):
    """Per-image and mean figures of the upscaler and of bicubic upscaling of the same LR.

    PSNR and SSIM are always computed (cheap: the protocol's figures); `metrics` picks the table's columns.
    `perceptual` (a PerceptualScorer) adds LPIPS per image and FID/IS per set ("set" in the report).
    """
    rows = []
    bar = tqdm(samples, desc=f"evaluating {upscaler.name} x{scale}", disable=not progress, leave=False)
    with bar:  # closed (cleared) before an error line is printed, not when the interpreter exits
        for sample in bar:
            try:  # onnxruntime failing on this image, an image too small to score: name the image too
                sr = upscaler(sample.lr)
                if sr.shape != sample.hr.shape:
                    raise UserError(f"model output is {sr.shape}, HR is {sample.hr.shape}")
                bicubic_sr = upscale_bicubic(sample.lr, scale)
                figures = image_metrics(sr, sample.hr, scale=scale)
                bicubic = image_metrics(bicubic_sr, sample.hr, scale=scale)
            except UserError as error:
                raise UserError(f"{sample.source or sample.name}: {error}") from None
            rows.append(
                {
                    "name": sample.name,
                    **figures,
                    "bicubic_psnr_y": bicubic["psnr_y"],
                    "bicubic_ssim_y": bicubic["ssim_y"],
                    "bicubic_psnr_rgb": bicubic["psnr_rgb"],
                    **(perceptual.image(sr, bicubic_sr, sample.hr, crop=scale) if perceptual else {}),
                }
            )
    if not rows:
        raise UserError("no images to evaluate")
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "name"}
    report = {"model": upscaler.name, "scale": scale, "metrics": list(metrics), "mean": mean, "images": rows}
    if perceptual:
        report["set"] = perceptual.finish()
    return report


COLUMNS = {  # metric -> its per-image columns, in table order
    "psnr": [("psnr_y", "PSNR_Y"), ("psnr_rgb", "PSNR_RGB"), ("bicubic_psnr_y", "bicubic PSNR_Y")],
    "ssim": [("ssim_y", "SSIM_Y"), ("bicubic_ssim_y", "bicubic SSIM_Y")],
    "lpips": [("lpips", "LPIPS"), ("bicubic_lpips", "bicubic LPIPS")],
}


def format_table(report):
    metrics = report.get("metrics", DEFAULT_METRICS)
    if "psnr" in metrics and "ssim" in metrics:  # the protocol's order, as before --metrics existed
        columns = [
            ("psnr_y", "PSNR_Y"),
            ("ssim_y", "SSIM_Y"),
            ("psnr_rgb", "PSNR_RGB"),
            ("bicubic_psnr_y", "bicubic PSNR_Y"),
            ("bicubic_ssim_y", "bicubic SSIM_Y"),
        ]
    else:
        columns = [column for metric in ("psnr", "ssim") if metric in metrics for column in COLUMNS[metric]]
    columns += COLUMNS["lpips"] if "lpips" in metrics else []
    width = max(8, *(len(row["name"]) for row in report["images"]))
    header = f"{'image':<{width}}" + "".join(f"{title:>16}" for _, title in columns)
    lines = [f"{report['model']} x{report['scale']} (Y = BT.601 luma, border {report['scale']} px)", header]
    for row in [*report["images"], {"name": "mean", **report["mean"]}]:
        lines.append(f"{row['name']:<{width}}" + "".join(f"{row[key]:>16.4f}" for key, _ in columns))
    lines.insert(-1, "-" * len(header))
    return "\n".join(lines + format_set_metrics(report.get("set")))
