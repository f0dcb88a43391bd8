"""Moved to sr_models/evaluation/samples.py; kept for one release."""
# ruff: noqa: F822 (the names of __all__ are served by moved(): they live in the new modules)

from sr_models.moved import moved

__all__ = ["Sample", "find_lr_file", "is_benchmark_root", "load_benchmark", "load_benchmark_root"]

moved(__name__, "sr_models.evaluation.samples")
