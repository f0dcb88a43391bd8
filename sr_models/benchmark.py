"""Moved to sr_models/evaluation/samples.py; kept for one release."""

from sr_models.evaluation.samples import Sample, find_lr_file, is_benchmark_root, load_benchmark, load_benchmark_root

__all__ = ["Sample", "find_lr_file", "is_benchmark_root", "load_benchmark", "load_benchmark_root"]
