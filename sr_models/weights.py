"""Weights in and out.

Our own files are safetensors whose metadata names the model, scale and hyper-parameters, so one file rebuilds
its model. Checkpoints people already have (`.pth`) are imported: the authors' plain state_dicts (each
architecture's descriptor maps its authors' key layout: `import_state`) and BasicSR files (`{'params': ...}` /
`{'params_ema': ...}`, `module.` prefixes, unwrapped here for every architecture). Every load is strict: each
tensor mapped and shape-checked. `.pth` files are read with `torch.load(weights_only=True)`, so no pickled code
ever runs.
"""

import hashlib
import json
import pickle
import re
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from sr_models.archs import ARCHITECTURES
from sr_models.errors import UserError
from sr_models.files import atomic_write
from sr_models.registry import architecture, check_spec, create_model

FORMAT = "sr-toolkit/1"


class WeightsError(UserError):
    """A weights file that cannot be used; the message names the file and the problem."""


def save_weights(model, path, *, extra=None):
    """Write `model` (built by `create_model`) as safetensors, atomically: a crash never leaves a half file.
    `extra`: more metadata strings (e.g. the step of a run's best weights)."""
    spec = dict(model.spec)
    metadata = {
        **(extra or {}),
        "format": FORMAT,
        "model": spec.pop("name"),
        "scale": str(spec.pop("scale")),
        "hyperparameters": json.dumps(spec, sort_keys=True),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    check_tensors(tensors, model, source=path)  # NaN weights are never shipped as a model
    metadata["sha256"] = tensors_digest(tensors)  # damaged bytes are found at load
    atomic_write(path, lambda partial: save_file(tensors, partial, metadata=metadata))


def tensors_digest(tensors):
    """SHA-256 of the tensors' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def read_spec(path):
    """The model spec stored in one of our safetensors files: {"name", "scale", **hyperparameters}, validated."""
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError) as error:
        raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
    if metadata.get("format") != FORMAT:
        raise WeightsError(
            f"{path}: no sr-toolkit metadata (model name and scale); pass --model and --scale to import it"
        )
    return spec_from_metadata(metadata, source=path)


def spec_from_metadata(metadata, *, source):
    """{"name", "scale", **hyperparameters} from string metadata (our safetensors and ONNX files), checked against
    the model's schema before anything is built: a file claiming 10^8 blocks is refused, not built for minutes."""
    missing = [key for key in ("model", "scale", "hyperparameters") if key not in metadata]
    if missing:
        raise WeightsError(f"{source}: metadata lacks {', '.join(missing)}")
    try:
        scale = int(metadata["scale"])
    except ValueError:
        raise WeightsError(f"{source}: metadata scale must be an integer, got {metadata['scale']!r}") from None
    try:
        hyperparameters = json.loads(metadata["hyperparameters"])
    except (json.JSONDecodeError, RecursionError) as error:  # RecursionError: JSON nested thousands deep
        raise WeightsError(f"{source}: metadata hyperparameters are not valid JSON ({error})") from None
    try:
        check_spec(metadata["model"], scale, hyperparameters, source=f"{source}: metadata")
    except ValueError as error:
        raise WeightsError(str(error)) from None
    return {"name": metadata["model"], "scale": scale, **hyperparameters}


def check_tensors(state, model, *, source):
    """Every tensor of the model's kind (floating weights, integer counters) and finite; WeightsError naming one."""
    expected = model.state_dict()
    for key, tensor in state.items():
        floating = expected[key].is_floating_point() if key in expected else True
        if tensor.is_floating_point() != floating:
            kind = "floating-point" if floating else "integer"
            raise WeightsError(f"{source}: tensor {key} has dtype {tensor.dtype}, expected {kind}")
        if floating and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise WeightsError(
                f"{source}: tensor {key} holds {bad} NaN or infinite value(s): the weights are broken (a diverged run?)"
            )


def load_model(path, *, name=None, scale=None, **overrides):
    """Build a model and load its weights from `path`.

    A safetensors file of ours needs nothing else. A foreign checkpoint (`.pth`, foreign safetensors) of any
    registered architecture is recognised from its tensor names and shapes (`checkpoint_spec`), hyper-parameters
    included; `name` and `scale` are then only needed where the shapes cannot tell (PAN x2 and x3), or to check
    what the file is.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file")
    try:  # the file's hyper-parameters (channels, blocks) even when --model and --scale are both given
        spec = checkpoint_spec(path, name=name, scale=scale)
        name, scale, overrides = spec.pop("name"), spec.pop("scale"), {**spec, **overrides}
    except UnrecognizedWeights:
        if name is None or scale is None:
            raise
        # tensors no descriptor recognises: built as asked, and the strict load below names what does not fit
    model = create_model(name, scale=scale, **overrides)
    load_state_dict_strict(model, read_state_dict(path), source=path)
    return model.eval()


def is_own_file(path):
    """Whether `path` is one of our safetensors files (metadata naming the model and scale)."""
    if Path(path).suffix != ".safetensors":
        return False
    try:
        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except (SafetensorError, OSError):
        return False


def checkpoint_spec(path, *, name=None, scale=None):
    """{"name", "scale", **hyperparameters} of a weights file: ours from its metadata, a foreign one from its
    tensors (`recognize`). A `name` or `scale` given must agree with the file; a scale the tensors cannot tell is
    taken from `scale`. The one rule every command (evaluate, export, --init-weights) goes through."""
    path = Path(path)
    if name is not None:
        architecture(name)  # an unknown name is said as such, before the file is read
    if is_own_file(path):
        spec = read_spec(path)
    else:  # read_state_dict names an unreadable file; the tensors of a readable one tell what it is
        spec = recognize(read_state_dict(path), source=path, scale=scale)
        hyperparameters = {k: v for k, v in spec.items() if k not in ("name", "scale")}
        try:  # shapes are read from the file: the same schema as metadata, before anything is built
            check_spec(spec["name"], spec["scale"], hyperparameters, source=str(path))
        except ValueError as error:
            raise WeightsError(str(error)) from None
    if name is not None and name != spec["name"]:
        raise WeightsError(f"{path}: holds a {spec['name']} x{spec['scale']} model, not {name}")
    if scale is not None and scale != spec["scale"]:
        raise WeightsError(f"{path}: holds a {spec['name']} x{spec['scale']} model, but scale {scale} was asked for")
    return spec


class UnrecognizedWeights(WeightsError):
    """No architecture's descriptor recognises the tensors of a weights file."""


def detected_architecture(state, *, source):
    """The one architecture whose descriptor recognises `state` (after its authors' key layout is imported)."""
    found = [arch for arch in ARCHITECTURES.values() if arch.detect(arch.import_state(state))]
    if not found:
        shown = ", ".join(list(state)[:4])
        raise UnrecognizedWeights(
            f"{source}: cannot tell the architecture from its tensor names ({shown}, ...); pass --model and --scale"
        )
    if len(found) > 1:
        raise WeightsError(
            f"{source}: its tensors fit more than one architecture ({', '.join(a.name for a in found)}):"
            " the tensors of two models in one file?"
        )
    return found[0]


def architecture_name(path):
    """The name of the architecture a weights file holds: ours from its metadata, a foreign one from its tensors;
    None when no descriptor recognises them."""
    if is_own_file(path):
        return read_spec(path)["name"]
    try:
        return detected_architecture(read_state_dict(path), source=path).name
    except UnrecognizedWeights:
        return None


def recognize(state, *, source, scale=None):
    """The architecture, scale and hyper-parameters of a foreign state_dict, from its tensor names and shapes.

    Each architecture's descriptor imports its authors' key layout (`import_state`), says whether the tensors are
    its own (`detect`) and reads the hyper-parameters and the scales they fit (`recognize`). Where the tensors fit
    two scales (PAN x2 and x3 are identical), `scale` decides, or the error asks for it.
    """
    arch = detected_architecture(state, source=source)
    name = arch.name
    hyper, candidates = arch.recognize(arch.import_state(state))
    if not candidates:
        raise WeightsError(f"{source}: a {name} checkpoint whose upsampling stages fit no supported scale")
    if scale is not None and scale not in candidates:
        raise WeightsError(
            f"{source}: holds a {name} x{'/x'.join(map(str, candidates))} model, but scale {scale} was asked for"
        )
    if scale is None:
        if len(candidates) > 1:
            raise WeightsError(
                f"{source}: a {name} checkpoint of scale {' or '.join(map(str, candidates))}: their "
                "tensors are identical, so the file cannot tell; pass --scale"
            )
        scale = candidates[0]
    defaults = arch.defaults()
    overrides = {k: int(v) for k, v in hyper.items() if int(v) != defaults[k]}
    return {"name": name, "scale": scale, **overrides}


def read_state_dict(path):
    """Tensors of a weights file, unwrapped from BasicSR containers and DDP prefixes."""
    path = Path(path)
    if path.suffix == ".safetensors":
        try:
            state = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                saved_digest = (f.metadata() or {}).get("sha256")
        except (SafetensorError, OSError) as error:
            raise WeightsError(f"{path}: not a readable safetensors file ({error})") from None
        if saved_digest is not None and tensors_digest(state) != saved_digest:
            raise WeightsError(f"{path}: damaged: the tensor data does not match the digest saved with it")
    else:
        check_zip_crcs(path)
        check_is_checkpoint(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as error:
            raise WeightsError(
                f"{path}: refused: the file holds pickled objects other than tensors, which could run code "
                f"when loaded ({str(error).splitlines()[0]})"
            ) from None
        except (RuntimeError, EOFError, OSError) as error:  # RecursionError is a RuntimeError: a pickle nested too deep
            raise WeightsError(f"{path}: not a readable PyTorch checkpoint ({error})") from None
    if isinstance(state, dict):
        for wrapper in ("params_ema", "params", "state_dict", "model"):  # BasicSR prefers the EMA weights
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
                break
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{path}: expected a mapping of names to tensors, found {type(state).__name__}")
    odd = [key for key in state if not isinstance(key, str)]
    if odd:
        raise WeightsError(
            f"{path}: expected tensor names (strings) as keys, found {len(odd)} other key(s), e.g. "
            f"{odd[0]!r} ({type(odd[0]).__name__})"
        )
    return {re.sub(r"^module\.", "", k): v for k, v in state.items()}


def check_is_checkpoint(path):
    """torch.save writes a zip archive (since 1.6) or, before, a pickle (first byte 0x80, the protocol opcode). Any
    other file (a key listing, an image, an ONNX model) is named as not a checkpoint, not as a refused pickle."""
    if zipfile.is_zipfile(path):
        return
    try:
        with open(path, "rb") as f:
            first = f.read(4)
    except OSError as error:
        raise WeightsError(f"{path}: cannot be read ({error.strerror})") from None
    if first == b"PK\x03\x04":  # a zip archive's start without its directory at the end
        raise WeightsError(f"{path}: damaged: a zip archive (as torch.save writes) whose end is missing (truncated?)")
    if first[:1] != b"\x80":
        raise WeightsError(
            f"{path}: not a PyTorch checkpoint (neither the zip archive nor the pickle torch.save writes)"
        )


def check_zip_crcs(path):
    """A .pth written by torch.save since 1.6 is a zip archive with a CRC per member, which torch.load never checks:
    check them, so flipped bytes are reported instead of loaded as weights. (Older, non-zip files carry none.)"""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise WeightsError(f"{path}: damaged zip archive ({error})") from None
    if bad is not None:
        raise WeightsError(f"{path}: damaged: member {bad} fails its CRC check (the file changed after it was written)")


def load_state_dict_strict(model, state, *, source):
    """Load `state` into `model`, mapping its architecture's foreign layouts; every key and shape must match."""
    state = in_our_layout(state, model)
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
    check_tensors(state, model, source=source)
    model.load_state_dict(state, strict=True)


def in_our_layout(state, model):
    """`state` with its authors' key layout mapped (the descriptor's `import_state`) when `model` is one of the
    registered architectures; unchanged for any other network (the perceptual ones load through here too)."""
    spec = getattr(model, "spec", None)
    return architecture(spec["name"]).import_state(state) if spec else state


def load_matching(model, state, *, source):
    """Load every tensor of `state` whose name and shape fit `model` (non-strict fine-tuning, e.g. an x2 model
    from x4 weights: trunk loaded, upsampling new). Returns (loaded, left_out, fresh): names loaded, names of
    `state` not used (with the reason), names of `model` that keep their fresh initial values. Every tensor loaded
    passes the same check as a strict load (check_tensors: the model's kind, finite): not strict means "not every
    tensor", never "any values"."""
    state = in_our_layout(state, model)
    expected = model.state_dict()
    loaded = {k: v for k, v in state.items() if k in expected and v.shape == expected[k].shape}
    left_out = [
        f"{k} {tuple(v.shape)} (" + (f"model: {tuple(expected[k].shape)})" if k in expected else "not in the model)")
        for k, v in state.items()
        if k not in loaded
    ]
    fresh = [k for k in expected if k not in loaded]
    check_tensors(loaded, model, source=source)
    model.load_state_dict(loaded, strict=False)
    return sorted(loaded), left_out, fresh
