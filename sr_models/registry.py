"""The model registry: one entry per architecture, hyper-parameters as keyword overrides."""

import inspect

from sr_models.pan import PAN
from sr_models.srresnet import SRResNet

MODELS = {
    "pan": PAN,
    "srresnet": SRResNet,
}


def list_models():
    return sorted(MODELS)


def model_class(name):
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return MODELS[name]


def create_model(name, *, scale=4, **overrides):
    """Build a registered model. `overrides` are the class's keyword hyper-parameters (e.g. channels=8).

    The returned module carries `model.spec = {"name", "scale", **overrides}`: what rebuilds it from a weights file.
    """
    cls = model_class(name)
    if scale not in cls.supported_scales:
        raise ValueError(f"{name} does not support scale {scale}; valid scales: {list(cls.supported_scales)}")
    valid = [p for p in inspect.signature(cls).parameters if p != "scale"]
    unknown = sorted(set(overrides) - set(valid))
    if unknown:
        raise ValueError(f"{name} has no hyper-parameter {', '.join(unknown)}; valid: {', '.join(valid)}")
    model = cls(scale=scale, **overrides)
    model.spec = {"name": name, "scale": scale, **overrides}
    return model
