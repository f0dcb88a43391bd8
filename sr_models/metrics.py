"""Moved to sr_models/evaluation/metrics.py; kept for one release."""
# ruff: noqa: F822 (the names of __all__ are served by moved(): they live in the new modules)

from sr_models.moved import moved

__all__ = ["image_metrics", "mod_crop", "psnr", "rgb_to_y", "ssim", "to_uint8"]

moved(__name__, "sr_models.evaluation.metrics")
