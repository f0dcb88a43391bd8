"""The model registry: one entry per architecture, hyper-parameters as keyword overrides."""

import inspect

from sr_models.errors import UserError
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
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return MODELS[name]


def check_spec(name, scale, overrides, *, source="model"):
    """Refuse, naming `source` and the field, a model name, scale or hyper-parameter the model cannot take.

    Runs before anything is built or allocated: the same rule for weights metadata, ONNX metadata and
    --model-overrides.
    """
    if not isinstance(name, str) or name not in MODELS:
        raise UserError(f"{source}: unknown model {name!r}; valid models: {', '.join(list_models())}")
    cls = MODELS[name]
    if type(scale) is not int or scale not in cls.supported_scales:
        raise UserError(f"{source}: {name} does not support scale {scale!r}; valid scales: {list(cls.supported_scales)}")
    if not isinstance(overrides, dict):
        raise UserError(f"{source}: hyper-parameters must be a mapping like {{channels: 8}}, got {overrides!r}")
    valid = [p for p in inspect.signature(cls).parameters if p != "scale"]
    unknown = sorted(str(key) for key in set(overrides) - set(valid))
    if unknown:
        glued = next((key for key in unknown if ":" in key), None)  # YAML reads {channels:8} as the key "channels:8"
        hint = f" (YAML needs a space after the colon: {glued.replace(':', ': ', 1)})" if glued else ""
        raise UserError(f"{source}: {name} has no hyper-parameter {', '.join(unknown)}{hint}; valid: {', '.join(valid)}")
    for key, value in overrides.items():
        low, high = cls.hyperparameter_ranges[key]
        if type(value) is not int:
            raise UserError(f"{source}: {name} {key} must be an integer, got {value!r}")
        if not low <= value <= high:
            raise UserError(f"{source}: {name} {key} must be in {low}..{high}, got {value}")
        if key in cls.even_hyperparameters and value % 2:
            raise UserError(f"{source}: {name} {key} must be even, got {value}")


def create_model(name, *, scale=4, **overrides):
    """Build a registered model. `overrides` are the class's keyword hyper-parameters (e.g. channels=8).

    The returned module carries `model.spec = {"name", "scale", **overrides}`: what rebuilds it from a weights file.
    """
    check_spec(name, scale, overrides)
    model = MODELS[name](scale=scale, **overrides)
    model.spec = {"name": name, "scale": scale, **overrides}
    return model
