"""Weights in and out.

Our own files are safetensors whose metadata names the model, scale and hyper-parameters, so one file rebuilds
its model. Checkpoints people already have (`.pth`) are imported: the PAN authors' plain state_dicts and BasicSR
files (`{'params': ...}` / `{'params_ema': ...}`, `module.` prefixes). Every load is strict: each tensor mapped
and shape-checked. `.pth` files are read with `torch.load(weights_only=True)`, so no pickled code ever runs.
"""

import json
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from sr_models.files import atomic_write
from sr_models.registry import create_model

FORMAT = "sr-toolkit/1"


class WeightsError(ValueError):
    """A weights file that cannot be used; the message names the file and the problem."""


def save_weights(model, path):
    """Write `model` (built by `create_model`) as safetensors, atomically: a crash never leaves a half file."""
    spec = dict(model.spec)
    metadata = {
        "format": FORMAT,
        "model": spec.pop("name"),
        "scale": str(spec.pop("scale")),
        "hyperparameters": json.dumps(spec, sort_keys=True),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write(path, lambda partial: save_file(tensors, partial, metadata=metadata))


def read_spec(path):
    """The model spec stored in one of our safetensors files: {"name", "scale", **hyperparameters}."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(
            f"{path}: no sr-toolkit metadata (model name and scale); pass --model and --scale to import it"
        )
    return {"name": metadata["model"], "scale": int(metadata["scale"]), **json.loads(metadata["hyperparameters"])}


def load_model(path, *, name=None, scale=None, **overrides):
    """Build a model and load its weights from `path`.

    A safetensors file of ours needs nothing else. Any other file (`.pth`, foreign safetensors) needs `name` and
    `scale` (and `overrides` when its hyper-parameters differ from the defaults).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    if name is None:
        spec = read_spec(path)
        name, scale, overrides = spec.pop("name"), spec.pop("scale"), spec
    elif scale is None:
        raise WeightsError(f"{path}: importing a foreign checkpoint needs the scale as well as the model name")
    model = create_model(name, scale=scale, **overrides)
    load_state_dict_strict(model, read_state_dict(path), source=path)
    return model.eval()


def read_state_dict(path):
    """Tensors of a weights file, unwrapped from BasicSR containers and DDP prefixes."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as error:
            raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise WeightsError(
                f"{path}: refused: the file holds pickled objects other than tensors, which could run code "
                f"when loaded ({str(error).splitlines()[0]})"
            ) from None
        except (RuntimeError, EOFError, OSError) as error:
            raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({error})") from None
    if isinstance(state, dict):
        for wrapper in ("params_ema", "params", "state_dict", "model"):  # BasicSR prefers the EMA weights
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: expected a mapping of names to tensors, found {type(state).__name__}")
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def load_state_dict_strict(model, state, *, source):
    """Load `state` into `model`, mapping known foreign layouts; every key and shape must match."""
    if "SCPA_trunk.0.conv1_a.weight" in state:
        state = convert_pan_authors_keys(state)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k} {tuple(state[k].shape)} (model: {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)):
        if keys:
            shown = ", ".join(keys[:5]) + (f" ... ({len(keys)} in all)" if len(keys) > 5 else "")
            problems.append(f"{label}: {shown}")
    if problems:
        spec = getattr(model, "spec", {})
        raise WeightsError(f"{source}: does not fit {spec}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)


# The PAN authors' names (left) -> ours (right), for every tensor but the SC-PA split, which is two of theirs.
_PAN_AUTHORS_RENAMES = [
    (r"^conv_first\.", "head."),
    (r"^SCPA_trunk\.(\d+)\.k1\.0\.", r"trunk.\1.plain_branch."),
    (r"^SCPA_trunk\.(\d+)\.PAConv\.k2\.", r"trunk.\1.attention_branch.gate."),
    (r"^SCPA_trunk\.(\d+)\.PAConv\.k3\.", r"trunk.\1.attention_branch.conv."),
    (r"^SCPA_trunk\.(\d+)\.PAConv\.k4\.", r"trunk.\1.attention_branch.out."),
    (r"^SCPA_trunk\.(\d+)\.conv3\.", r"trunk.\1.merge."),
    (r"^upconv(\d)\.", lambda m: f"upsample.{int(m[1]) - 1}.conv."),
    (r"^att(\d)\.conv\.", lambda m: f"upsample.{int(m[1]) - 1}.attention.conv."),
    (r"^HRconv(\d)\.", lambda m: f"upsample.{int(m[1]) - 1}.refine."),
    (r"^conv_last\.", "tail."),
]


def convert_pan_authors_keys(state):
    """The authors' PAN state_dict in our layout. Unknown keys pass through, so the strict check names them."""
    converted = {}
    for key, tensor in state.items():
        split = re.match(r"^SCPA_trunk\.(\d+)\.conv1_([ab])\.weight$", key)
        if split:
            if split[2] == "a":  # our split conv = their conv1_a (first half of outputs) stacked on conv1_b
                other = state.get(key.replace("conv1_a", "conv1_b"))
                if other is not None:
                    converted[f"trunk.{split[1]}.split.weight"] = torch.cat([tensor, other], dim=0)
                else:
                    converted[key] = tensor
            elif key.replace("conv1_b", "conv1_a") not in state:
                converted[key] = tensor
            continue
        for pattern, replacement in _PAN_AUTHORS_RENAMES:
            new_key, count = re.subn(pattern, replacement, key)
            if count:
                converted[new_key] = tensor
                break
        else:
            converted[key] = tensor
    return converted
