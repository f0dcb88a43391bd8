"""Moved to sr_models/evaluation/metrics.py; kept for one release."""

from sr_models.evaluation.metrics import image_metrics, mod_crop, psnr, rgb_to_y, ssim, to_uint8

__all__ = ["image_metrics", "mod_crop", "psnr", "rgb_to_y", "ssim", "to_uint8"]
