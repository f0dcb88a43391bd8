"""The model registry: the architectures of sr_models/archs by name, hyper-parameters as keyword overrides."""

from sr_models.archs import ARCHITECTURES
from sr_models.errors import UserError


def list_models():
    return sorted(ARCHITECTURES)


def architecture(name):
    """The `Architecture` descriptor registered as `name`; UserError listing the valid names otherwise."""
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise UserError(f"unknown model {name!r}; valid models: {', '.join(list_models())}")
    return ARCHITECTURES[name]


def model_class(name):
    return architecture(name).model_class


def check_spec(name, scale, overrides, *, source="model"):
    """Refuse, naming `source` and the field, a model name, scale or hyper-parameter the model cannot take.

    Runs before anything is built or allocated: the same rule for weights metadata, ONNX metadata and
    --model-overrides.
    """
    if not isinstance(name, str) or name not in ARCHITECTURES:
        raise UserError(f"{source}: unknown model {name!r}; valid models: {', '.join(list_models())}")
    arch = ARCHITECTURES[name]
    if type(scale) is not int or scale not in arch.scales:
        raise UserError(f"{source}: {name} does not support scale {scale!r}; valid scales: {list(arch.scales)}")
    if not isinstance(overrides, dict):
        raise UserError(f"{source}: hyper-parameters must be a mapping like {{channels: 8}}, got {overrides!r}")
    valid = list(arch.hyperparameters)
    unknown = sorted(str(key) for key in set(overrides) - set(valid))
    if unknown:
        glued = next((key for key in unknown if ":" in key), None)  # YAML reads {channels:8} as the key "channels:8"
        hint = f" (YAML needs a space after the colon: {glued.replace(':', ': ', 1)})" if glued else ""
        raise UserError(
            f"{source}: {name} has no hyper-parameter {', '.join(unknown)}{hint}; valid: {', '.join(valid)}"
        )
    for key, value in overrides.items():
        low, high = arch.hyperparameters[key]
        if type(value) is not int:
            raise UserError(f"{source}: {name} {key} must be an integer, got {value!r}")
        if not low <= value <= high:
            raise UserError(f"{source}: {name} {key} must be in {low}..{high}, got {value}")
        multiple = arch.multiple_of.get(key, 1)
        if value % multiple:
            kind = "even" if multiple == 2 else f"a multiple of {multiple}"
            raise UserError(f"{source}: {name} {key} must be {kind}, got {value}")


def create_model(name, *, scale=4, **overrides):
    """Build a registered model. `overrides` are the class's keyword hyper-parameters (e.g. channels=8).

    The returned module carries `model.spec = {"name", "scale", **overrides}`: what rebuilds it from a weights file.
    """
    check_spec(name, scale, overrides)
    model = ARCHITECTURES[name].model_class(scale=scale, **overrides)
    model.spec = {"name": name, "scale": scale, **overrides}
    return model


def create_tiny(name, *, scale=4):
    """The architecture's tiny configuration (a few channels, one block): for tests and benches."""
    return create_model(name, scale=scale, **architecture(name).tiny)
