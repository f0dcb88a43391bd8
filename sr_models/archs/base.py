"""What the toolkit knows about one architecture, beside its model: the `Architecture` descriptor.

Every command reads these and nothing else names an architecture: the registry (names, schema), recognition of
weights files (`detect`, `recognize`, `import_state` for the authors' key layouts), export (`graph_friendly`) and
int8 (`int8_float_modules`, `calibration_percentile`); tests and benches build `tiny` models from them.
"""

import re
from dataclasses import dataclass, field
from typing import Callable

from torch import nn

CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def unchanged(state):
    return state


def no_rewrite(model):
    return None


def none_float(model):
    return []


@dataclass(frozen=True)
class Architecture:
    """One architecture.

    name: the registry name (`--model`). model_class: built as `model_class(scale=..., **hyperparameters)`.
    scales: the scales it supports. hyperparameters: name -> (low, high), the inclusive range a file or option may
    give: wide enough for any real use, narrow enough that a damaged or hostile file cannot make us build a model
    for minutes. multiple_of: name -> N where the value must be a multiple of N. tiny: a configuration of a few
    channels for tests and benches.
    detect(state) -> bool: whether a state_dict in our layout (after `import_state`) holds this architecture.
    recognize(state) -> (hyperparameters, scales): read from tensor shapes; `scales` are those the tensors fit
    (two when they cannot tell, e.g. PAN x2 and x3).
    import_state(state) -> state: a foreign key layout (the authors' files) in ours; any other state unchanged.
    graph_friendly(model): rewrites, in place on a copy that export makes, of forms ONNX runs badly (after the
    generic ones: every einops pixel shuffle is already `nn.PixelShuffle`).
    int8_float_modules(model) -> module paths of the convs that stay float in an int8 export; checked against
    `model.named_modules()` and the exported graph, so a renamed module fails loudly instead of being quantized.
    calibration_percentile: int8 calibration's percentile for this architecture (None: export's default).
    """

    name: str
    model_class: type
    description: str
    scales: tuple
    hyperparameters: dict
    tiny: dict
    detect: Callable
    recognize: Callable
    multiple_of: dict = field(default_factory=dict)
    import_state: Callable = unchanged
    graph_friendly: Callable = no_rewrite
    int8_float_modules: Callable = none_float
    calibration_percentile: float | None = None

    def defaults(self):
        """The hyper-parameters' default values (the paper's configuration)."""
        import inspect

        parameters = inspect.signature(self.model_class).parameters
        return {name: parameters[name].default for name in self.hyperparameters}


def renamed(key, renames):
    """`key` after the first of `renames` ((pattern, replacement) pairs for re.sub) that matches; else unchanged."""
    for pattern, replacement in renames:
        new_key, count = re.subn(pattern, replacement, key)
        if count:
            return new_key
    return key


def layer_count(state, prefix):
    """How many numbered children `prefix.N.` have tensors in `state` (e.g. the blocks of a trunk)."""
    return len({key[len(prefix) :].split(".")[0] for key in state if key.startswith(prefix)})
