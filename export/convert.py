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
import types
import warnings

import onnx
import torch
from einops.layers.torch import Rearrange
from torch import nn

from export.runtime import INPUT_NAME, LAYOUT, METADATA_FORMAT, OUTPUT_NAME, VALUE_RANGE
from sr_models.errors import UserError
from sr_models.layers import PixelShuffle
from sr_models.pan import SCPA
from sr_models.srresnet import SRResNet

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


def _scpa_forward_split_concat(self, x):
    """`SCPA.forward` with its einops branch split and merge written as what they mean: a channel Split and Concat.

    "b (branch c) h w -> branch b c h w" takes the first half of the channels as branch 0: a split at a fixed
    channel count (a constant, so ONNX gets one Split node, not a shape computation); the merge is `cat(dim=1)`.
    As einops, the TorchScript exporter emits Shape/Gather/Reshape/Transpose chains per block, and onnxruntime's
    int8 kernels pay ~14 ms per block for the 5-D Transpose (docs/performance.md).
    """
    half = self.plain_branch.in_channels
    plain, attention = torch.split(self.act(self.split(x)), [half, half], dim=1)
    plain = self.act(self.plain_branch(plain))
    attention = self.act(self.attention_branch(attention))
    return x + self.merge(torch.cat([plain, attention], dim=1))


def conv_before_pixel_shuffle(conv, r):
    """The conv that, run BEFORE `nn.PixelShuffle(r)`, gives what `conv` gives run after it.

    `conv(PixelShuffle(r)(x))`: a k x k conv over the r-times larger image. Output pixel (r*i + a, r*j + b) reads
    shuffled pixels (r*i + a + dy, r*j + b + dx), i.e. channel (c, e, f) of input pixel (i + p, j + q) with
    a + dy = r*p + e. So the same sums are a conv over the small image, with r*r times the output channels (one
    per (a, b)), r*r times the input channels and a kernel of 2*ceil(k//2 / r) + 1: `PixelShuffle(r)(conv'(x))`.
    Zero padding agrees too: a shuffled pixel is outside the image exactly when its small-image pixel is.
    """
    assert conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1, "plain stride-1 convs only"
    k = conv.kernel_size[0]
    assert conv.kernel_size == (k, k) and k % 2 == 1 and conv.padding == (k // 2, k // 2), "odd 'same' kernels only"
    half = k // 2
    reach = -(-half // r)  # ceil(half / r): how far, in small-image pixels, the kernel reaches
    out_channels, in_channels = conv.out_channels, conv.in_channels
    weight = conv.weight.detach()
    folded = torch.zeros(out_channels, r, r, in_channels, r, r, 2 * reach + 1, 2 * reach + 1, dtype=weight.dtype)
    for a in range(r):
        for b in range(r):
            for dy in range(-half, half + 1):
                p, e = divmod(a + dy, r)
                for dx in range(-half, half + 1):
                    q, f = divmod(b + dx, r)
                    folded[:, a, b, :, e, f, p + reach, q + reach] = weight[:, :, dy + half, dx + half]
    before = nn.Conv2d(in_channels * r * r, out_channels * r * r, 2 * reach + 1, padding=reach, bias=conv.bias is not None)
    before.weight.data = folded.reshape(before.weight.shape)  # (o a b) (c e f) kh kw: PixelShuffle's channel order
    if conv.bias is not None:
        before.bias.data = conv.bias.detach().repeat_interleave(r * r)
    return before


def _srresnet_tail_before_last_shuffle(model):
    """SRResNet ends with PixelShuffle(r) -> PReLU -> 9x9 conv to 3 channels on the full-size image. A 3-channel
    conv is a poor matrix product (onnxruntime: 2.7 s of a 256x256 x4 call at one thread). Moved before the shuffle
    it is a 5x5 conv to 12 channels on the half-size image: the same sums, 0.8 s."""
    last = model.upsample[-1]  # conv -> PixelShuffle(r) -> PReLU
    conv, shuffle, prelu = last
    assert isinstance(shuffle, nn.PixelShuffle), "run after the einops pixel shuffles became nn.PixelShuffle"
    r = shuffle.upscale_factor
    assert prelu.num_parameters == 1, "one PReLU slope commutes with the shuffle; per-channel slopes would not"
    model.upsample[-1] = nn.Sequential(conv, prelu, conv_before_pixel_shuffle(model.tail, r), nn.PixelShuffle(r))
    model.tail = nn.Identity()


def graph_friendly(model):
    """A copy of `model` whose einops reshapes are the plain ops ONNX has for them; the model itself is untouched.

    - pixel-shuffle `Rearrange` layers -> `nn.PixelShuffle` (one DepthToSpace instead of Reshape/Transpose/Reshape)
    - PAN's SC-PA split/merge -> chunk/cat (Split/Concat instead of Reshape/Transpose/Split/Squeeze and back)
    - SRResNet's tail conv moved before the last pixel shuffle (`conv_before_pixel_shuffle`)
    The models keep their einops form (that is what is trained and tested); parity against the original model,
    which every export runs, proves the copy computes the same thing.
    """
    model = copy.deepcopy(model)
    for parent in model.modules():
        if isinstance(parent, SCPA):
            parent.forward = types.MethodType(_scpa_forward_split_concat, parent)
        for child_name, child in parent.named_children():
            if isinstance(child, Rearrange) and child.pattern == PIXEL_SHUFFLE_PATTERN:
                r1, r2 = child.axes_lengths["r1"], child.axes_lengths["r2"]
                assert r1 == r2, f"pixel shuffle with unequal factors {r1}, {r2} has no DepthToSpace twin"
                setattr(parent, child_name, nn.PixelShuffle(r1))
    if isinstance(model, SRResNet):
        _srresnet_tail_before_last_shuffle(model)
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
        raise ExportError(f"--opset {opset}: the {exporter} exporter writes opsets {MIN_OPSET} to {MAX_OPSET[exporter]}"
                          + ("; for newer ones use --exporter dynamo" if opset <= MAX_OPSET["dynamo"] else ""))


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
                    model, (example,), str(path), dynamo=False, opset_version=opset,
                    input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                                  OUTPUT_NAME: {0: "batch", 2: "sr_height", 3: "sr_width"}},
                )  # fmt: skip
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
        model, (example,), None, dynamo=True, opset_version=opset, verbose=False,
        input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
        dynamic_shapes=({0: Dim("batch"), 2: Dim("height"), 3: Dim("width")},),
    )  # fmt: skip
    program.save(str(path))
