"""Super-resolution models, weights, resizing and metrics.

Imports are lazy on purpose: `export/upscale.py` uses `sr_models.images` on machines without PyTorch, and a
plain `import sr_models` must not pull torch in there.
"""

import importlib

_EXPORTS = {
    "create_model": "sr_models.registry",
    "list_models": "sr_models.registry",
    "load_model": "sr_models.weights",
    "save_weights": "sr_models.weights",
    "WeightsError": "sr_models.weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'sr_models' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
