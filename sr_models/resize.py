"""Moved to sr_models/evaluation/resize.py; kept for one release."""

from sr_models.evaluation.resize import contributions, cubic, downscale_image, imresize, resize_matrix, upscale_bicubic

__all__ = ["contributions", "cubic", "downscale_image", "imresize", "resize_matrix", "upscale_bicubic"]
