"""Which integer arithmetic onnxruntime's CPU kernels do for our int8 files, on which CPU, and which of those
arithmetics a file was checked for. numpy and onnx only (export/runtime.py imports it: no torch).

An int8 conv here is uint8 activations x int8 weights (per-channel, zero point 0) summed into int32. onnxruntime's
MLAS kernels compute that sum in one of two ways, by CPU (`FAMILIES`):
    x86-u8s8-vnni  AVX-VNNI, AVX512-VNNI or AMX-INT8 (VPDPBUSD(S), TDPBUSD): every product summed in int32, exact.
    x86-u8s8-avx2  AVX2, or AVX-512 without VNNI: VPMADDUBSW adds two adjacent uint8 x int8 products into int16
                   with signed saturation, then VPMADDWD widens to int32. It multiplies the raw uint8 values (the
                   zero point is corrected afterwards), so a pair reaches 255 * (|w1| + |w2|): 8-bit weights
                   (|w| <= 127, 64770) overflow 32767, 7-bit ones (|w| <= 64, 32640) cannot.
    x86-sse        x86 without AVX2 (SSE4.1 kernels): arithmetic NOT verified. Under qemu's SandyBridge (AVX, no
                   AVX2) the default PAN x4 int8 file's outputs differ from the exact sums by up to 0.067 on 45-73%
                   of pixels (docs/int8.md), so no file claims this family unless its parity ran on it.
    arm64          UDOT/SDOT, or UMULL + UADALP on cores without the dot product: exact int32.
onnxruntime and OpenVINO document the AVX2 overflow; `tests/test_kernels.py` shows it on the real kernels (a
saturating conv, weights 127, inputs 255) when it can run them (this CPU, or qemu's Haswell).

So a file is checked for every family when its parity ran on one family and the others are proven to compute the
same int32 sums: the exact ones always do (`exact_conv` is their arithmetic; a test compares it with this CPU's
real kernels), the saturating one does when no pair of any int8 conv's weights can reach 32767
(`saturating_convs` is empty, decided from the quantized weights alone). The export stores the result under
`FAMILIES_KEY`; export/runtime.py warns in one line when it opens a file on a CPU family not listed.
"""

import platform
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FAMILIES = ("x86-u8s8-vnni", "x86-u8s8-avx2", "x86-sse", "arm64")
EXACT_FAMILIES = ("x86-u8s8-vnni", "arm64")  # every product summed in int32
# The families a parity run on one of them can vouch for, by the proof below; x86-sse only by its own kernels.
PROVABLE_FAMILIES = ("x86-u8s8-vnni", "x86-u8s8-avx2", "arm64")
SATURATING_FAMILY = "x86-u8s8-avx2"
FAMILIES_KEY = "int8_kernel_families"
INT16_MAX = 32767
UINT8_MAX = 255
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
ISA_FLAGS = (
    "sse4_1",
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "amx_tile",
    "avx512_bf16",
    "asimddp",
    "asimd",
    "i8mm",
)


@dataclass(frozen=True)
class Cpu:
    """What decides the int8 kernels: the machine (x86_64, aarch64, ...), the model name, the ISA flags."""

    machine: str
    model: str
    flags: frozenset

    def describe(self):
        """One line for every figure: model, and the ISA flags that decide int8 speed and arithmetic."""
        shown = [flag for flag in ISA_FLAGS if flag in self.flags]
        return f"CPU: {self.model} ({self.machine}; {' '.join(shown) or 'ISA flags unknown'})"


def detect_cpu(cpuinfo=Path("/proc/cpuinfo"), machine=None):
    """This machine's Cpu: flags from /proc/cpuinfo on Linux (none elsewhere: the family is then unknown on x86)."""
    machine = (machine or platform.machine()).lower()
    model, flags = platform.processor() or machine, set()
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for key, value in re.findall(r"^([^:\n]+?)\s*:\s*(.*)$", text, flags=re.MULTILINE):
        if key in ("model name", "Model") and model in (machine, platform.processor()):
            model = value.strip() or model
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return Cpu(machine, model, frozenset(flags))


def kernel_family(cpu):
    """The family of `cpu` (one of FAMILIES), or None when it cannot be told (x86 without flags, other ISAs)."""
    if cpu.machine in ("aarch64", "arm64"):
        return "arm64"
    if cpu.machine not in ("x86_64", "amd64", "x86", "i686", "i386"):
        return None
    if not cpu.flags:
        return None
    if any(flag in cpu.flags for flag in VNNI_FLAGS):
        return "x86-u8s8-vnni"
    if "avx2" in cpu.flags or "avx512bw" in cpu.flags:
        return SATURATING_FAMILY
    return "x86-sse"


def int8_pays(cpu):
    """Whether int8 is expected to be faster than fp32 on `cpu`: only where the u8s8 kernels sum 4 products per
    instruction (VNNI, AMX). On AVX2 alone it measured 0.94-0.99x fp32 (docs/int8.md)."""
    return kernel_family(cpu) == "x86-u8s8-vnni"


PAIR_LIMIT = INT16_MAX // UINT8_MAX  # 128: a same-sign pair of weights summing to more can saturate


def k_pairs(weight):
    """An int8 conv weight (O, C, kh, kw) as (O, P, 2): the K elements that VPMADDUBSW adds in one int16.

    K runs in the (kh, kw, C) order of onnxruntime's NHWC convolution, consecutive elements paired, an odd K padded
    with a zero (tests/test_kernels.py checks this pairing against the real AVX2 kernels under qemu).
    """
    flat = weight.transpose(0, 2, 3, 1).reshape(weight.shape[0], -1).astype(np.int64)
    if flat.shape[1] % 2:
        flat = np.pad(flat, ((0, 0), (0, 1)))
    return flat.reshape(flat.shape[0], -1, 2)


def pair_excess(weight):
    """For each K pair of `weight`: how far its same-sign magnitude exceeds PAIR_LIMIT (0: cannot saturate).

    A pair's sum over uint8 inputs ranges over [255 * (negative weights), 255 * (positive weights)], so it stays
    in int16 exactly when the positive weights sum to at most 128 and the negative ones to at least -128.
    """
    pairs = k_pairs(weight)
    positive, negative = np.clip(pairs, 0, None).sum(-1), -np.clip(pairs, None, 0).sum(-1)
    return np.maximum(np.maximum(positive, negative) - PAIR_LIMIT, 0)


def int8_conv_weights(model):
    """{conv node: int8 weight initializer} of the int8 convs of a QDQ onnx.ModelProto (weight via DequantizeLinear)."""
    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    dequantized = {node.output[0]: node.input[0] for node in graph.node if node.op_type == "DequantizeLinear"}
    weights = {}
    for node in graph.node:
        source = dequantized.get(node.input[1]) if node.op_type == "Conv" and len(node.input) > 1 else None
        if source in initializers and initializers[source].data_type == 3:  # TensorProto.INT8
            weights[node.name] = (node, initializers[source])
    return weights


def _group(node):
    return next((attribute.i for attribute in node.attribute if attribute.name == "group"), 1)


def can_saturate(node, weight):
    """Whether an int8 conv (node, int8 array) can overflow an int16 pair on x86-u8s8-avx2. Grouped convs run
    other kernels whose pairing was not checked: for them only 7-bit weights (|w| <= 64) count as safe."""
    if _group(node) != 1:
        return bool(np.abs(weight.astype(np.int64)).max() > PAIR_LIMIT // 2)
    return bool(pair_excess(weight).any())


def saturating_convs(model):
    """Names of the int8 convs whose int16 pair sums can saturate on x86-u8s8-avx2 (empty: it computes exactly)."""
    from onnx import numpy_helper

    return [
        name
        for name, (node, tensor) in int8_conv_weights(model).items()
        if can_saturate(node, numpy_helper.to_array(tensor))
    ]


def unsaturable_channel(weight, scale):
    """(int8 weights, scale) of one output channel's float weights whose K pairs cannot saturate: the channel's
    own scale, grown in 1% steps from max|w| / 127 until no same-sign pair of rounded weights exceeds 128 (at
    most to max|w| / 64, where every weight fits 7 bits). Channels without such pairs keep their 8-bit scale."""
    peak = float(np.abs(weight).max())
    if peak == 0:
        return np.zeros(weight.shape, np.int8), scale
    step = scale
    while True:
        quantized = np.clip(np.rint(weight / step), -127, 127).astype(np.int8)
        if not pair_excess(quantized[None]).any() or step >= peak / (PAIR_LIMIT // 2):
            return quantized, step
        step *= 1.01


def make_unsaturable(model, float_weights):
    """Rewrite the int8 convs of the QDQ `model` in place so that no x86 kernel family can saturate.

    `float_weights`: {name: array} of the float model it was quantized from (weights and biases by the names the
    DequantizeLinear outputs carry). A channel with a same-sign K pair over 128 gets a coarser scale of its own
    (unsaturable_channel); its int32 bias is requantized with it (bias scale = input scale x weight scale).
    Grouped convs: every weight within [-64, 64]. Returns the number of channels rescaled.
    """
    from onnx import numpy_helper

    graph = model.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    producers = {output: node for node in graph.node for output in node.output}
    array = lambda name: numpy_helper.to_array(initializers[name])  # noqa: E731

    def store(name, value):
        initializers[name].CopyFrom(numpy_helper.from_array(value, name))

    rescaled = 0
    for node, tensor in int8_conv_weights(model).values():
        weight_dq = producers[node.input[1]]
        weight = float_weights[weight_dq.output[0].removesuffix("_DequantizeLinear_Output")].astype(np.float64)
        scales = array(weight_dq.input[1]).astype(np.float64).reshape(-1)
        group_limit = _group(node) != 1
        quantized = numpy_helper.to_array(tensor).copy()
        for channel in range(weight.shape[0]):
            if group_limit:
                peak = float(np.abs(weight[channel]).max())
                if np.abs(quantized[channel]).max() > PAIR_LIMIT // 2 and peak > 0:
                    scales[channel] = peak / (PAIR_LIMIT // 2)
                    quantized[channel] = np.rint(weight[channel] / scales[channel]).astype(np.int8)
                    rescaled += 1
            elif pair_excess(quantized[channel][None]).any():
                quantized[channel], scales[channel] = unsaturable_channel(weight[channel], scales[channel])
                rescaled += 1
        store(tensor.name, quantized)
        store(weight_dq.input[1], scales.astype(np.float32))
        if len(node.input) > 2 and node.input[2] in producers:  # the int32 bias: scale = input scale x weight's
            bias_dq = producers[node.input[2]]
            input_scale = float(array(producers[node.input[0]].input[1]))
            bias_scales = (input_scale * scales).astype(np.float32)
            bias = float_weights[bias_dq.output[0]].astype(np.float64)
            store(bias_dq.input[0], np.rint(bias / bias_scales.astype(np.float64)).astype(np.int32))
            store(bias_dq.input[1], bias_scales)
    return rescaled


def checked_families(model, local):
    """The families a parity run on family `local` (kernel_family of this CPU) also proves for `model`.

    Exact families compute the same int32 sums as each other; the saturating one computes them too when no pair can
    saturate. `local` None (unknown CPU): only what holds for every family, nothing when saturation is possible.
    """
    safe = not saturating_convs(model)
    if local == SATURATING_FAMILY:
        return list(PROVABLE_FAMILIES) if safe else [SATURATING_FAMILY]
    if local in EXACT_FAMILIES:
        return list(PROVABLE_FAMILIES) if safe else list(EXACT_FAMILIES)
    if local is not None:  # x86-sse: its real kernels ran the parity; what they compute is not known to equal others'
        return [local]
    return list(PROVABLE_FAMILIES) if safe else []


def unchecked_warning(metadata, cpu):
    """One line when an int8 file runs on a CPU family its export did not check, else None (fp32/fp16: None)."""
    if metadata.get("precision") != "int8":
        return None
    listed = metadata.get(FAMILIES_KEY)
    family = kernel_family(cpu)
    checked = listed.split(",") if listed else []
    if listed is not None and (family in checked or (family is None and set(checked) >= set(PROVABLE_FAMILIES))):
        return None
    what = f"int8 kernel family {family}" if family else "an int8 kernel family that cannot be told"
    claim = f"its export checked {', '.join(checked)} only" if listed else "its export recorded no kernel families"
    return (
        f"warning: {cpu.model} has {what}; {claim}: the PSNR_Y drop may exceed the exported budget here "
        "(re-export it with export/to_onnx.py --precision int8, whose default weights no kernel family saturates)"
    )


_WARNED = set()


def warn_unchecked_family(path, metadata, cpu=None):
    """Print unchecked_warning's line to stderr, once per file and process (upscale and evaluate open a model once,
    the tests many times)."""
    line = unchecked_warning(metadata, cpu or detect_cpu())
    if line and str(path) not in _WARNED:
        _WARNED.add(str(path))
        print(f"{path}: {line}", file=sys.stderr)


def exact_conv(x, weight, bias=None, *, pads=(0, 0, 0, 0), strides=(1, 1), saturate_pairs=False):
    """The int32 sums of an int8 conv: x (N, C, H, W) uint8 (raw values), weight (O, C, kh, kw) int8, bias int32.

    `saturate_pairs`: emulate VPMADDUBSW's int16 saturation of consecutive products taken in the order (kh, kw, C)
    of the NHWC im2col, as a bound check for the tests (the pairing MLAS uses is not promised; exact families never
    saturate). pads: (top, left, bottom, right).
    """
    n, c, h, w = x.shape
    o, _, kh, kw = weight.shape
    padded = np.pad(x.astype(np.int64), ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    out_h = (padded.shape[2] - kh) // strides[0] + 1
    out_w = (padded.shape[3] - kw) // strides[1] + 1
    columns = np.empty((n, out_h, out_w, kh, kw, c), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = padded[:, :, i : i + strides[0] * out_h : strides[0], j : j + strides[1] * out_w : strides[1]]
            columns[:, :, :, i, j, :] = patch.transpose(0, 2, 3, 1)
    columns = columns.reshape(n, out_h, out_w, -1)
    flat = weight.astype(np.int64).transpose(0, 2, 3, 1).reshape(o, -1)
    if saturate_pairs:
        if flat.shape[1] % 2:
            flat, columns = np.pad(flat, ((0, 0), (0, 1))), np.pad(columns, ((0, 0),) * 3 + ((0, 1),))
        products = columns[..., None, :] * flat  # (n, oh, ow, o, K)
        pairs = np.clip(products[..., 0::2] + products[..., 1::2], -INT16_MAX - 1, INT16_MAX)
        total = pairs.sum(axis=-1)
    else:
        total = columns @ flat.T
    if bias is not None:
        total = total + bias.astype(np.int64)
    return total.transpose(0, 3, 1, 2)
