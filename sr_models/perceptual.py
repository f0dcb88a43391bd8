"""Moved to sr_models/evaluation/perceptual.py (the weight files: perceptual_weights.py); kept for one release."""
# ruff: noqa: F822 (the names of __all__ are served by moved(): they live in the new modules)

from sr_models.moved import moved

__all__ = [
    "ALEXNET",
    "DEFAULT_METRICS",
    "DEFAULT_PATCH",
    "FEATURE_DIM",
    "INCEPTION",
    "IS_SPLITS",
    "LPIPS_LINEAR",
    "METRICS",
    "WEIGHTS_ENV",
    "WEIGHTS_FOR",
    "MissingWeightsError",
    "PerceptualScorer",
    "RunningGaussian",
    "WeightFile",
    "check_published_hash",
    "find_weights",
    "format_set_metrics",
    "frechet_distance",
    "hub_dir",
    "inception_score",
    "load_inception",
    "load_lpips",
    "make_scorer",
    "parse_metrics",
    "patches",
]

moved(__name__, "sr_models.evaluation.perceptual", "sr_models.evaluation.perceptual_weights")
