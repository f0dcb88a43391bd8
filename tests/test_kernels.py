"""int8 kernel families: the emulation of their integer arithmetic against the real kernels, the no-saturation
rewrite, CPU detection and the decisions taken from it (stubbed CPUs, so they run on every machine)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.kernels import (
    FAMILIES_KEY,
    PROVABLE_FAMILIES,
    Cpu,
    checked_families,
    detect_cpu,
    exact_conv,
    int8_pays,
    kernel_family,
    make_unsaturable,
    pair_excess,
    saturating_convs,
    unchecked_warning,
    unsaturable_channel,
)

REPO = Path(__file__).resolve().parents[1]
SHAPES = [(40, 40, 3), (24, 16, 1), (3, 8, 3), (6, 8, 3)]  # (C, O, k): PAN's widths, an odd C whose pairs cross taps


def qlinear_conv(weight, *, height=6, width=7, scale):
    """A one-node QLinearConv model: uint8 x (scale 1, zero point 0), int8 weight (scale 1), output scale `scale`,
    zero point 128, 'same' padding."""
    out_channels, channels, k, _ = weight.shape
    pad = k // 2
    constants = {
        "xs": np.array(1.0, np.float32),
        "xz": np.array(0, np.uint8),
        "w": weight,
        "ws": np.ones(out_channels, np.float32),
        "wz": np.zeros(out_channels, np.int8),
        "ys": np.array(scale, np.float32),
        "yz": np.array(128, np.uint8),
    }
    node = helper.make_node(
        "QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"], kernel_shape=[k, k], pads=[pad] * 4
    )
    graph = helper.make_graph(
        [node],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, channels, height, width])],
        [helper.make_tensor_value_info("y", TensorProto.UINT8, [1, out_channels, height, width])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def requantize(total, scale):
    """QLinearConv's output step: float32 product, round half to even, + zero point, clamp (MLAS's requantize)."""
    return np.clip(np.rint(total.astype(np.float32) * np.float32(1 / scale)) + 128, 0, 255).astype(np.uint8)


def unsaturable(weight):
    """Float weights (O, C, kh, kw) quantized per channel as the default export does (unsaturable_channel)."""
    scales = np.abs(weight).reshape(len(weight), -1).max(axis=1) / 127
    return np.stack([unsaturable_channel(w, s)[0] for w, s in zip(weight, scales)])


def compare_with_real_kernels(seed=0):
    """Per shape: the fraction of outputs where the real kernels differ from the exact and from the saturating
    emulation, for plain 8-bit weights and for the default export's unsaturable ones."""
    import onnxruntime as ort

    rng, rows = np.random.default_rng(seed), []
    for channels, out_channels, k in SHAPES:
        floats = rng.uniform(-1, 1, (out_channels, channels, k, k))
        weight = np.rint(floats / np.abs(floats).reshape(out_channels, -1).max(axis=1)[:, None, None, None] * 127)
        x = rng.integers(150, 256, (1, channels, 6, 7)).astype(np.uint8)  # bright inputs: pairs near the limit
        row = {}
        for label, w in (("8bit", weight.astype(np.int8)), ("unsaturable", unsaturable(floats))):
            exact = exact_conv(x, w, pads=(k // 2,) * 4)
            scale = float(np.abs(exact).max()) / 120
            model = qlinear_conv(w, scale=scale)
            (real,) = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
                None, {"x": x}
            )
            saturating = exact_conv(x, w, pads=(k // 2,) * 4, saturate_pairs=True)
            row[label] = (
                float(np.mean(real != requantize(exact, scale))),
                float(np.mean(real != requantize(saturating, scale))),
            )
        rows.append(row)
    return rows


def test_emulation_equals_the_real_kernels_of_this_cpu():
    """The emulation of this CPU's family reproduces onnxruntime's real int8 conv kernels to the bit."""
    family = kernel_family(detect_cpu())
    if family is None:
        pytest.skip("this CPU's int8 kernel family cannot be told (no /proc/cpuinfo flags)")
    for row in compare_with_real_kernels():
        exact_mismatch, saturating_mismatch = row["8bit"]
        assert (saturating_mismatch if family == "x86-u8s8-avx2" else exact_mismatch) == 0, (family, row)
        assert (exact_mismatch if family == "x86-u8s8-avx2" else saturating_mismatch) > 0.3, row  # they do differ
        assert tuple(row["unsaturable"]) == (0.0, 0.0), row  # after the rewrite every family computes the exact sums


QEMU = shutil.which("qemu-x86_64")


@pytest.mark.skipif(
    QEMU is None or kernel_family(detect_cpu()) not in ("x86-u8s8-vnni",),
    reason="needs qemu-x86_64 (apt-get install qemu-user) on an x86 CPU of another family, to run "
    "the AVX2 kernels under qemu's Haswell",
)
def test_saturating_emulation_equals_the_real_avx2_kernels_under_qemu():
    """onnxruntime under qemu's Haswell (AVX2, no VNNI) takes the saturating path; the emulation matches it."""
    code = "import json, tests.test_kernels as t; print(json.dumps(t.compare_with_real_kernels()))"
    result = subprocess.run(
        [QEMU, "-cpu", "Haswell", sys.executable, "-c", code],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    import json

    for row in json.loads(result.stdout.strip().splitlines()[-1]):
        exact_mismatch, saturating_mismatch = row["8bit"]
        assert saturating_mismatch == 0 and exact_mismatch > 0.3, row
        assert tuple(row["unsaturable"]) == (0.0, 0.0), row


def test_unsaturable_channel_keeps_8_bits_where_it_can():
    rng = np.random.default_rng(3)
    floats = rng.normal(size=(8, 5, 3, 3))
    scales = np.abs(floats).reshape(8, -1).max(axis=1) / 127
    eight_bit = np.rint(floats / scales[:, None, None, None]).astype(np.int8)
    assert pair_excess(eight_bit).any()
    for weight, scale, plain in zip(floats, scales, eight_bit):
        quantized, step = unsaturable_channel(weight, scale)
        assert not pair_excess(quantized[None]).any() and step >= scale
        if not pair_excess(plain[None]).any():
            assert step == scale and np.array_equal(quantized, plain)  # nothing to fix: the 8-bit channel unchanged
        else:
            assert np.abs(quantized).max() > 64  # coarser, yet finer than 7 bits
        assert np.abs(quantized * step - weight).max() <= step / 2 + 1e-12  # plain rounding at its own step
    # A channel whose two largest weights are adjacent and same-sign: at most 128 between them.
    pair = np.array([1.0, 1.0, -0.5, 0.2]).reshape(4, 1, 1)
    quantized, _ = unsaturable_channel(pair, 1 / 127)
    assert int(quantized[0, 0, 0]) + int(quantized[1, 0, 0]) <= 128


def tiny_qdq(weight):
    """DequantizeLinear(int8 weight) -> Conv: enough graph for saturating_convs / checked_families."""
    graph = helper.make_graph(
        [
            helper.make_node("DequantizeLinear", ["wq", "ws"], ["w"], axis=0),
            helper.make_node("Conv", ["x", "w"], ["y"], name="/conv/Conv", kernel_shape=list(weight.shape[2:])),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, weight.shape[1], 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(weight, "wq"), numpy_helper.from_array(np.ones(weight.shape[0], np.float32), "ws")],
    )
    return helper.make_model(graph)


def test_checked_families_follow_the_saturation_proof():
    weight = np.random.default_rng(0).integers(-127, 128, (4, 4, 3, 3)).astype(np.int8)
    model = tiny_qdq(weight)
    assert saturating_convs(model) == ["/conv/Conv"]
    assert checked_families(model, "x86-u8s8-vnni") == ["x86-u8s8-vnni", "arm64"]
    assert checked_families(model, "x86-u8s8-avx2") == ["x86-u8s8-avx2"]
    assert checked_families(model, None) == []
    assert make_unsaturable(model, {"w": weight.astype(np.float32) / 127}) > 0 and saturating_convs(model) == []
    for local in (*PROVABLE_FAMILIES, None):
        assert checked_families(model, local) == list(PROVABLE_FAMILIES)
    assert checked_families(model, "x86-sse") == ["x86-sse"]  # measured to differ under qemu: only by itself


AVX2_EPYC = Cpu("x86_64", "AMD EPYC 7B12", frozenset({"sse4_1", "avx2"}))
SAPPHIRE = Cpu("x86_64", "Intel Xeon", frozenset({"avx2", "avx512f", "avx512bw", "avx512_vnni", "amx_int8"}))
SKYLAKE = Cpu("x86_64", "Intel Xeon Skylake", frozenset({"avx2", "avx512f", "avx512bw"}))


def test_families_and_speed_verdict_from_stubbed_cpus(tmp_path):
    assert [kernel_family(c) for c in (AVX2_EPYC, SAPPHIRE, SKYLAKE)] == [
        "x86-u8s8-avx2",
        "x86-u8s8-vnni",
        "x86-u8s8-avx2",
    ]
    assert kernel_family(Cpu("x86_64", "old", frozenset({"sse4_1"}))) == "x86-sse"
    assert kernel_family(Cpu("aarch64", "Neoverse", frozenset())) == "arm64"
    assert kernel_family(Cpu("x86_64", "unknown", frozenset())) is None
    assert int8_pays(SAPPHIRE) and not int8_pays(AVX2_EPYC) and not int8_pays(SKYLAKE)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_1 avx2 fma\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B12\nflags\t\t: fpu sse4_1 avx2 fma\n"
    )
    cpu = detect_cpu(cpuinfo, machine="x86_64")
    assert cpu.model == "AMD EPYC 7B12" and kernel_family(cpu) == "x86-u8s8-avx2"
    assert cpu.describe() == "CPU: AMD EPYC 7B12 (x86_64; sse4_1 avx2)"


def test_warning_only_for_int8_on_an_unchecked_family():
    every = {"precision": "int8", FAMILIES_KEY: ",".join(PROVABLE_FAMILIES)}
    vnni_only = {"precision": "int8", FAMILIES_KEY: "x86-u8s8-vnni,arm64"}
    assert unchecked_warning(every, AVX2_EPYC) is None and unchecked_warning(vnni_only, SAPPHIRE) is None
    line = unchecked_warning(vnni_only, AVX2_EPYC)
    assert line.startswith("warning: AMD EPYC 7B12 has int8 kernel family x86-u8s8-avx2") and "\n" not in line
    assert unchecked_warning(every, Cpu("x86_64", "old", frozenset({"sse4_1"}))).startswith("warning: ")
    assert unchecked_warning({"precision": "int8"}, SAPPHIRE).startswith("warning: ")  # an int8 file from before
    assert unchecked_warning({"precision": "fp32"}, AVX2_EPYC) is None
    assert unchecked_warning({}, AVX2_EPYC) is None  # a foreign file: no precision, nothing claimed


def test_int8_export_records_its_families_and_cannot_saturate(tmp_path):
    import torch

    from export.content import default_calibration
    from export.to_onnx import build_onnx
    from sr_models import create_model

    torch.manual_seed(0)
    model = create_model("pan", scale=2, channels=8, upsample_channels=8, num_blocks=1).eval()
    path = tmp_path / "int8.onnx"
    build_onnx(model, path, precision="int8", calibration_images=default_calibration(scale=2))
    written = onnx.load(str(path))
    assert saturating_convs(written) == []
    assert {p.key: p.value for p in written.metadata_props}[FAMILIES_KEY] == ",".join(PROVABLE_FAMILIES)
    build_onnx(model, path, precision="fp32")
    assert FAMILIES_KEY not in {p.key for p in onnx.load(str(path)).metadata_props}
