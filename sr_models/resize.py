"""Moved to sr_models/evaluation/resize.py; kept for one release."""
# ruff: noqa: F822 (the names of __all__ are served by moved(): they live in the new modules)

from sr_models.moved import moved

__all__ = ["contributions", "cubic", "downscale_image", "imresize", "resize_matrix", "upscale_bicubic"]

moved(__name__, "sr_models.evaluation.resize")
