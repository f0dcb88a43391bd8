"""fp32 ONNX -> fp16 or int8 ONNX, both keeping float32 input and output.

fp16: onnxruntime's own copy of onnxconverter-common's converter (`onnxruntime.transformers.float16`), so no extra
dependency. `keep_io_types=True`: the graph takes and returns float32 with one Cast at each end. Callers (numpy,
train/evaluate.py, export/upscale.py) then feed the same array to any precision, and the [0, 1] input keeps its
full 8-bit resolution up to the first conv (fp16 has 11 bits of mantissa, enough, but a float16 I/O would push the
cast into every client).

int8: static QDQ quantization (onnxruntime.quantization.quantize_static) calibrated on image patches. Only the
convolutions are quantized (per-channel int8 weights, uint8 activations); sigmoid gates, products, residual adds
and the bilinear skip stay float. Quantizing those too made PAN x4 ~25% faster still but cost up to 0.49 dB
PSNR_Y on a Set5 image, over the 0.3 dB budget. What costs quality is the activations (weights int8 and
activations float: at most 0.05 dB on any held-out image), so three steps spend their 256 levels better
(docs/int8.md measures each):
  - channel equalization (export/equalize.py) before calibration;
  - the input's levels are exactly the 8-bit image's (scale 1/255, zero point 0): quantizing it loses nothing;
  - ops that run in float (the residual adds, the bilinear skip) read the float tensor, not its int8 copy, so
    rounding noise is added once per int8 conv instead of piling up along the residual stream.
Then the weights are made unsaturable (WEIGHTS, export/kernels.py): on x86 CPUs without VNNI onnxruntime's int8
kernels add pairs of products in int16 with saturation, so a file checked on one CPU would lose more on another.
"""

import contextlib
import io
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16
from torch import nn

from export.equalize import equalize
from export.kernels import make_unsaturable
from export.runtime import INPUT_NAME
from sr_models.errors import UserError
from sr_models.registry import architecture

# Calibration: this many LR patches per image, all of one size (onnxruntime's histogram calibrators need equal
# shapes), at most CALIBRATION_PATCH px, cut at seeded random places. Percentile calibration ignores the rare outlier
# activations that stretch min/max ranges; where to cut is a trade between clipping (costly on the hard edges of
# cartoons and charts) and coarse steps (costly on smooth photos), measured per architecture (docs/int8.md) and
# set in its descriptor (`calibration_percentile`); the others get PERCENTILE, which suits SRResNet, whose hard
# image is a smooth photo.
CALIBRATION_PATCH = 64
PATCHES_PER_IMAGE = 2
PERCENTILE = 99.9999
# On x86 CPUs without VNNI, onnxruntime's u8s8 kernels add two uint8 x int8 products in int16 with saturation
# (VPMADDUBSW): 8-bit weights overflow it (255 * 2 * 127 > 32767). "paired" (default): 8-bit weights, then each
# same-sign pair of weights that the kernel adds is cut to 128 in magnitude (export/kernels.py), so no pair can
# saturate; "7bit": every weight in [-64, 64] (onnxruntime's reduce_range), pairing-proof but coarser
# (docs/int8.md); "8bit": the export before, exact only on VNNI and ARM kernels.
WEIGHTS = ("paired", "7bit", "8bit")
DEFAULT_WEIGHTS = "paired"
EXACT_INPUT = {"scale": np.array(1 / 255, dtype=np.float32), "zero_point": np.array(0, dtype=np.uint8)}


def to_fp16(src, dst):
    """Convert the fp32 ONNX file `src` to fp16 weights and activations at `dst`, float32 I/O kept."""
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    sort_topologically(model.graph)  # the converter appends its input Casts after their consumers
    onnx.save(model, str(dst))


def sort_topologically(graph):
    """Reorder `graph.node` so that every node comes after the nodes producing its inputs (onnx.checker's rule)."""
    available = {value.name for value in graph.input} | {tensor.name for tensor in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a dangling input at node {pending[0].name!r}")
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if node not in ready]
    del graph.node[:]
    graph.node.extend(ordered)


def calibration_patches(images, *, patch=CALIBRATION_PATCH, per_image=PATCHES_PER_IMAGE, seed=0):
    """`per_image` (1, 3, p, p) float32 crops in [0, 1] of each (h, w, 3) uint8 LR image, images taken in turn.

    p = min(patch, the smallest image side).
    """
    if not images:
        raise UserError("int8 calibration needs at least one image")
    size = min(patch, *(min(image.shape[:2]) for image in images))
    rng = np.random.default_rng(seed)
    patches = []
    for index in range(per_image * len(images)):
        image = images[index % len(images)]
        y = int(rng.integers(0, image.shape[0] - size + 1))
        x = int(rng.integers(0, image.shape[1] - size + 1))
        patches.append(image[y : y + size, x : x + size].transpose(2, 0, 1)[None].astype(np.float32) / 255)
    return patches


class PatchReader(CalibrationDataReader):
    """Feeds calibration patches to onnxruntime's calibrator one at a time."""

    def __init__(self, patches):
        self.patches = iter(patches)

    def get_next(self):
        patch = next(self.patches, None)
        return None if patch is None else {INPUT_NAME: patch}


def large_kernel_convs(path):
    """Names of the Conv nodes with kernels larger than 3x3: they stay float (see to_int8)."""
    names = []
    for node in onnx.load(str(path)).graph.node:
        kernel = next((list(a.ints) for a in node.attribute if a.name == "kernel_shape"), [])
        if node.op_type == "Conv" and np.prod(kernel) > 9:
            names.append(node.name)
    return names


CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def onnx_scope(model, module_path):
    """The name scope the TorchScript exporter gives the nodes of `model`'s submodule `module_path`.

    One segment per module on the path, each the module's name relative to its nearest ancestor that is not a
    container: `trunk.0.body.0` -> `/trunk/trunk.0/body/body.0` (trunk and body are nn.Sequential).
    """
    parts = module_path.split(".")
    segments, anchor, module = [], 0, model
    for index, part in enumerate(parts):
        module = getattr(module, part)
        segments.append(".".join(parts[anchor : index + 1]))
        if not isinstance(module, CONTAINERS):
            anchor = index + 1
    return "/" + "/".join(segments)


def default_keep_float(path, model):
    """Names of the Conv nodes of the ONNX file `path` (exported from `model`) that stay float by default: the
    convs its architecture names (`Architecture.int8_float_modules`, chosen by measurement, docs/int8.md).

    Each name must be a Conv2d of `model` and a Conv node of the graph: a renamed module fails here instead of
    being quantized without a word. A graph without the TorchScript exporter's scope names (the dynamo exporter's)
    keeps nothing float; the parity check still judges the result.
    """
    arch = architecture(model.spec["name"])
    modules = dict(model.named_modules())
    convs = [node.name for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"]
    if not any(name.startswith("/") for name in convs):
        return []
    names = []
    for module_path in arch.int8_float_modules(model):
        if not isinstance(modules.get(module_path), nn.Conv2d):
            raise LookupError(f"{arch.name}: int8_float_modules names {module_path!r}, not a Conv2d of the model")
        node = onnx_scope(model, module_path) + "/Conv"
        if node not in convs:
            raise LookupError(f"{arch.name}: the conv {module_path!r} to keep float has no node {node!r} in {path}")
        names.append(node)
    return names


def default_percentile(model_name):
    """The calibration percentile of an architecture (its descriptor's, else PERCENTILE)."""
    return architecture(model_name).calibration_percentile or PERCENTILE


def to_int8(
    src,
    dst,
    *,
    calibration_images,
    method="percentile",
    percentile=PERCENTILE,
    exclude=(),
    patches_per_image=PATCHES_PER_IMAGE,
    calibration_cache=None,
    equalize_channels=True,
    exact_input=True,
    float_skips=True,
    weights=DEFAULT_WEIGHTS,
):
    """Statically quantize the fp32 ONNX file `src` (QDQ, convs only) at `dst`, calibrated on LR images.

    Convs with kernels larger than 3x3 (SRResNet's 9x9 head and tail) stay float: onnxruntime's int8 conv unfolds
    its input (im2col, k*k*C bytes per output pixel), which for SRResNet's tail on a 1024x1024 output is a
    5.4 GB buffer, against under 2 GB for the whole fp32 model. So do the Conv nodes named in `exclude` (the most
    sensitive ones, see export/sensitivity.py). `calibration_cache`: a JSON file of activation ranges, written by
    the first call and read by the next ones (the sensitivity scan quantizes one model many times over).
    `equalize_channels`, `exact_input`, `float_skips`: the three steps of the module docstring (off: the export
    as it was before them, for bench/int8_quality.py). `weights`: one of WEIGHTS (above).
    """
    if weights not in WEIGHTS:
        raise UserError(f"int8 weights: one of {', '.join(WEIGHTS)}, not {weights!r}")
    methods = {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }
    with tempfile.TemporaryDirectory(prefix="sr-int8-") as scratch:
        # Shape inference + graph cleanup first, as onnxruntime's quantization guide recommends.
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        convs = {node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"}
        unknown = sorted(set(exclude) - convs)
        if unknown:
            raise UserError(
                f"no Conv node named {unknown[0]!r} to keep float in this model (its convs are named "
                f"like {min(convs)!r})"
            )
        patches = calibration_patches(calibration_images, per_image=patches_per_image)
        if equalize_channels:
            equalized = Path(scratch) / "equalized.onnx"
            equalize(prepared, equalized, patches)
            prepared = equalized
        reader = None
        if calibration_cache is None or not Path(calibration_cache).is_file():
            reader = PatchReader(patches)
        overrides = {INPUT_NAME: [EXACT_INPUT]} if exact_input else {}
        # onnxruntime's calibrators print their progress with print(); keep the CLI's output to our report.
        with contextlib.redirect_stdout(io.StringIO()):
            quantize_static(
                str(prepared),
                str(dst),
                reader,
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv"],
                nodes_to_exclude=sorted(set(large_kernel_convs(prepared)) | set(exclude)),
                per_channel=True,
                reduce_range=weights == "7bit",
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=methods[method],
                calibration_cache_path=calibration_cache,
                extra_options={"CalibPercentile": percentile, "TensorQuantOverrides": overrides},
            )
        if float_skips:
            float_ops_read_float(dst)
        if weights == "paired":
            model = onnx.load(str(dst))
            make_unsaturable(
                model, {t.name: numpy_helper.to_array(t) for t in onnx.load(str(prepared)).graph.initializer}
            )
            onnx.save(model, str(dst))


def float_ops_read_float(path):
    """Rewrite the QDQ model at `path` so that float ops read a quantized tensor's float value, not its int8 copy.

    onnxruntime's quantizer hands every consumer of a quantized tensor the dequantized copy. Where the tensor comes
    from a float op (a residual Add, the graph input), its float value exists anyway: the other float consumers
    (the next Add, the bilinear skip) now read it, and the rounding reaches the output only through the int8 conv
    that needed it instead of piling up along the residual stream (SRResNet: smoothest held-out photo 0.48 ->
    0.27 dB). The price: onnxruntime no longer fuses those Adds into int8 adds (about 8% of SRResNet's int8 time).
    Tensors made by an int8 conv keep their copy: their float value does not exist once onnxruntime fuses the conv
    with its output quantization.
    """
    model = onnx.load(str(path))
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output}
    constants = {tensor.name for tensor in graph.initializer}
    quantized_from = {
        node.output[0]: node.input[0]
        for node in graph.node
        if node.op_type == "QuantizeLinear" and node.input[0] not in constants
    }
    float_value = {}  # dequantized copy -> the float tensor it copies
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in quantized_from:
            source = quantized_from[node.input[0]]
            if source not in producers or producers[source].op_type != "Conv":
                float_value[node.output[0]] = source
    for node in graph.node:
        if node.op_type not in ("Conv", "QuantizeLinear", "DequantizeLinear"):
            for index, name in enumerate(node.input):
                node.input[index] = float_value.get(name, name)
    while True:  # drop the quantize/dequantize pairs that nothing reads any more
        read = {name for node in graph.node for name in node.input} | {value.name for value in graph.output}
        unread = [
            node
            for node in graph.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear") and not read & set(node.output)
        ]
        if not unread:
            break
        for node in unread:
            graph.node.remove(node)
    onnx.save(model, str(path))


def float_convs(path):
    """Names of the Conv nodes of an ONNX file that run in float (no DequantizeLinear feeds their weight)."""
    graph = onnx.load(str(path)).graph
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    return [node.name for node in graph.node if node.op_type == "Conv" and node.input[1] not in dequantized]
