"""PyTorch model -> fp32 ONNX graph with dynamic batch, height and width, named I/O and self-describing metadata.

Exporter: torch 2.13 defaults to the torch.export-based ("dynamo") exporter. Both it and the TorchScript
exporter turn our einops rearranges into correct Reshape/Transpose graphs with dynamic N, H, W (checked: export at
32x32, run 17x23 and a batch of 3). We default to the TorchScript one (`exporter="torchscript"`) because it needs
no extra package (the dynamo exporter needs onnxscript), exports PAN x4 in ~7 s instead of ~30 s, and keeps a
dynamic batch even from a batch-1 example, where torch.export silently specializes the batch axis to 1.
`exporter="dynamo"` is there for when torch drops the TorchScript exporter; parity is checked either way.
"""

import copy
import json
import warnings

import onnx
import torch
from einops.layers.torch import Rearrange
from torch import nn

from export.runtime import INPUT_NAME, LAYOUT, METADATA_FORMAT, OUTPUT_NAME, VALUE_RANGE
from sr_models.errors import UserError
from sr_models.layers import PixelShuffle
from sr_models.registry import architecture

MIN_OPSET = 17
DEFAULT_OPSET = 17
EXPORTERS = ("torchscript", "dynamo")
# The newest opset each exporter of this torch writes (torch.onnx's own limits: past them it fails after
# a page of warnings, or writes a graph onnxruntime cannot load).
MAX_OPSET = {"torchscript": 20, "dynamo": 23}
# The export example: its values do not matter, its shape must differ from what parity runs (and batch > 1
# so that no exporter can specialize the batch axis to 1).
EXAMPLE_SHAPE = (2, 3, 32, 32)
PIXEL_SHUFFLE_PATTERN = PixelShuffle(2).pattern


class ExportError(UserError, RuntimeError):  # RuntimeError: what it was before UserError
    """The export itself failed; the message says at which step."""


def graph_friendly(model):
    """A copy of `model` whose einops reshapes are the plain ops ONNX has for them; the model itself is untouched.

    - pixel-shuffle `Rearrange` layers -> `nn.PixelShuffle` (one DepthToSpace instead of Reshape/Transpose/Reshape)
    - then the architecture's own rewrites (its descriptor's `graph_friendly`: PAN's SC-PA split/merge as
      Split/Concat, SRResNet's tail conv moved before the last pixel shuffle)
    The models keep their einops form (that is what is trained and tested); parity against the original model,
    which every export runs, proves the copy computes the same thing.
    """
    model = copy.deepcopy(model)
    for parent in model.modules():
        for child_name, child in parent.named_children():
            if isinstance(child, Rearrange) and child.pattern == PIXEL_SHUFFLE_PATTERN:
                r1, r2 = child.axes_lengths["r1"], child.axes_lengths["r2"]
                assert r1 == r2, f"pixel shuffle with unequal factors {r1}, {r2} has no DepthToSpace twin"
                setattr(parent, child_name, nn.PixelShuffle(r1))
    architecture(model.spec["name"]).graph_friendly(model)
    return model


def metadata_props(model, *, precision, exporter, opset):
    """What a deployed file says about itself (read back by export.runtime.read_metadata)."""
    spec = dict(model.spec)
    name, scale = spec.pop("name"), spec.pop("scale")
    return {
        "format": METADATA_FORMAT,
        "model": name,
        "scale": str(scale),
        "spec": json.dumps(spec, sort_keys=True),  # hyper-parameters beyond name and scale
        "input": INPUT_NAME,
        "output": OUTPUT_NAME,
        "layout": LAYOUT,
        "value_range": VALUE_RANGE,
        "precision": precision,
        "io_dtype": "float32",  # fp16 and int8 exports keep float32 input and output too
        "exporter": exporter,
        "opset": str(opset),
    }


def set_metadata(path, props):
    """Replace the metadata_props of the ONNX file at `path`."""
    model = onnx.load(str(path))
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, props)
    model.producer_name = "sr-toolkit"
    onnx.save(model, str(path))


def check_opset(opset, exporter):
    """ExportError naming --opset (or --exporter) unless this exporter writes that opset: checked before any work."""
    if exporter not in EXPORTERS:
        raise ExportError(f"--exporter {exporter!r}: not an exporter; valid: {', '.join(EXPORTERS)}")
    if opset < MIN_OPSET:
        raise ExportError(f"--opset {opset}: too old: at least {MIN_OPSET} (Resize and DepthToSpace semantics)")
    if opset > MAX_OPSET[exporter]:
        raise ExportError(
            f"--opset {opset}: the {exporter} exporter writes opsets {MIN_OPSET} to {MAX_OPSET[exporter]}"
            + ("; for newer ones use --exporter dynamo" if opset <= MAX_OPSET["dynamo"] else "")
        )


def export_fp32(model, path, *, opset=DEFAULT_OPSET, exporter="torchscript", graph_friendly_forms=True):
    """Write `model` (eval mode, CPU, float32) as ONNX at `path` with dynamic N, H, W and fp32 metadata."""
    check_opset(opset, exporter)
    model = (graph_friendly(model) if graph_friendly_forms else model).cpu().float().eval()
    example = torch.rand(EXAMPLE_SHAPE)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # The TorchScript exporter's deprecation notice, and its TracerWarning on unpacking the SC-PA split
            # (a fixed 2 branches: the trace is right for every input), say nothing actionable here.
            warnings.simplefilter("ignore")
            if exporter == "torchscript":
                torch.onnx.export(
                    model,
                    (example,),
                    str(path),
                    dynamo=False,
                    opset_version=opset,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={
                        INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                        OUTPUT_NAME: {0: "batch", 2: "sr_height", 3: "sr_width"},
                    },
                )
            else:
                _export_dynamo(model, example, path, opset)
    except ExportError:
        raise
    except Exception as error:
        raise ExportError(f"torch.onnx.export ({exporter}) failed: {' '.join(str(error).split())[:500]}") from None
    set_metadata(path, metadata_props(model, precision="fp32", exporter=exporter, opset=opset))


def _export_dynamo(model, example, path, opset):
    try:
        import onnxscript  # noqa: F401  (the dynamo exporter's dependency, not one of ours)
    except ImportError:
        raise ExportError("the dynamo exporter needs onnxscript: pip install onnxscript") from None
    from torch.export import Dim

    program = torch.onnx.export(
        model,
        (example,),
        None,
        dynamo=True,
        opset_version=opset,
        verbose=False,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: Dim("batch"), 2: Dim("height"), 3: Dim("width")},),
    )
    program.save(str(path))
