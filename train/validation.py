"""Validation during training: held-out figures (the protocol of sr_models.evaluation.scoring) and comparison images.

Each validation writes `<run>/samples/step-00001000/<image>.png`: a crop of bicubic | model | HR side by side under
their names, and sends the same images to the trackers that take images (TensorBoard).
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from sr_models.evaluation.perceptual import DEFAULT_METRICS, make_scorer, parse_metrics
from sr_models.evaluation.resize import upscale_bicubic
from sr_models.evaluation.scoring import TorchUpscaler, score
from sr_models.images import save_rgb

GAP = 4  # white pixels between the three panels
LABEL_HEIGHT = 14  # the strip naming them
TITLES = ("bicubic", "model", "HR")


class RecordingUpscaler:
    """An upscaler that keeps its first `keep` outputs, so previews need no second pass of the model."""

    def __init__(self, upscaler, *, keep):
        self.upscaler, self.keep, self.outputs = upscaler, keep, []
        self.name, self.scale = upscaler.name, upscaler.scale

    def __call__(self, lr):
        sr = self.upscaler(lr)
        if len(self.outputs) < self.keep:
            self.outputs.append(sr)
        return sr


def comparison(lr, sr, hr, *, scale, size=256):
    """bicubic | model | HR, the same centre crop (at most `size` HR pixels square) of each, under a strip that
    names them: (LABEL_HEIGHT + h, 3w + 2 GAP, 3)."""
    bicubic = upscale_bicubic(lr, scale)
    height, width = hr.shape[:2]
    crop_h, crop_w = min(size, height), min(size, width)
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    gap = np.full((crop_h, GAP, 3), 255, dtype=np.uint8)
    panels = [image[top : top + crop_h, left : left + crop_w] for image in (bicubic, sr, hr)]
    row = np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)
    return np.concatenate([labels(crop_w, row.shape[1]), row], axis=0)


def labels(panel_width, width):
    """A white strip with each panel's title centred above it, in black (Pillow's built-in font)."""
    strip = Image.new("RGB", (width, LABEL_HEIGHT), "white")
    draw = ImageDraw.Draw(strip)
    font = ImageFont.load_default()
    for index, title in enumerate(TITLES):
        text_width = draw.textlength(title, font=font)
        x = index * (panel_width + GAP) + max(0, (panel_width - text_width) / 2)
        draw.text((x, 2), title, fill="black", font=font)
    return np.asarray(strip)


def validation_scorer(config, device):
    """The PerceptualScorer of `config.val_metrics` (None for psnr/ssim alone): built, and its weights found,
    before training, so a missing weight file stops the run at the start rather than at the first validation."""
    return make_scorer(parse_metrics(config.val_metrics), device=device)


def scalars(report):
    """The tracker scalars of a validation report: <mean figure> and <set figure> (FID, IS) by name."""
    return {**report["mean"], **report.get("set", {})}


def validate(
    model, samples, *, device, scale, step, run_dir, preview_images, accelerator=None, prefix="", perceptual=None
):
    """Score `model` (in eval mode for the call) on `samples` (LPIPS/FID/IS too with a `perceptual` scorer); write
    and log comparison images (their names prefixed by `prefix`, e.g. the validation set's when there are several)."""
    was_training = model.training
    model.eval()
    try:
        upscaler = RecordingUpscaler(TorchUpscaler(model, device=device), keep=preview_images)
        metrics = perceptual.metrics if perceptual else DEFAULT_METRICS
        report = score(upscaler, samples, scale=scale, progress=False, metrics=metrics, perceptual=perceptual)
    finally:
        model.train(was_training)
    images = {}
    for sample, sr in zip(samples, upscaler.outputs):
        panel = comparison(sample.lr, sr, sample.hr, scale=scale)
        save_rgb(Path(run_dir) / "samples" / f"step-{step:08d}" / f"{prefix}{sample.name}.png", panel)
        images[f"val/{prefix}{sample.name} (bicubic | model | HR)"] = panel[None]  # (1, h, w, 3)
    if accelerator is not None and images:
        for tracker in accelerator.trackers:
            if tracker.name == "tensorboard":
                tracker.log_images(images, step=step, dataformats="NHWC")
    return report
