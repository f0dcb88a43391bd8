"""int8 quality steps: channel equalization keeps the function and evens the channels; the input is quantized
losslessly; float ops read float tensors."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from export.content import default_calibration
from export.convert import export_fp32
from export.equalize import channel_groups, channel_spans, equalize
from export.quantize import calibration_patches, to_int8
from export.runtime import INPUT_NAME
from sr_models import create_model

TINY = {"pan": {"channels": 8, "upsample_channels": 8, "num_blocks": 2}, "srresnet": {"channels": 8, "num_blocks": 2}}


def uneven_fp32(tmp_path, name, *, scale=2):
    """A tiny model whose conv output channels span very different ranges (as trained nets' do), as fp32 ONNX."""
    torch.manual_seed(0)
    model = create_model(name, scale=scale, **TINY[name]).eval()
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.mul_(torch.rand(module.out_channels, 1, 1, 1, generator=generator) ** 3 * 4 + 0.01)
    path = tmp_path / f"{name}.onnx"
    export_fp32(model, path)
    return path


def run(path, batch):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: batch})[0]


def conv_tensors(path):
    convs = [node for node in onnx.load(str(path)).graph.node if node.op_type == "Conv"]
    return sorted({node.input[0] for node in convs[1:]} | {node.output[0] for node in convs[:-1]})


@pytest.mark.parametrize("name", sorted(TINY))
def test_equalization_keeps_the_function_and_evens_the_channels(tmp_path, name):
    fp32 = uneven_fp32(tmp_path, name)
    batches = calibration_patches(default_calibration(scale=2), per_image=1)
    rescaled = equalize(fp32, tmp_path / "eq.onnx", batches)
    assert rescaled > 0
    # Same function on an input it was not calibrated on.
    other = np.random.default_rng(5).random((2, 3, 21, 17), dtype=np.float32)
    before, after = run(fp32, other), run(tmp_path / "eq.onnx", other)
    np.testing.assert_allclose(after, before, atol=1e-5 * np.abs(before).max())
    # Channels span more evenly: the narrowest channel's share of its tensor's range grows, tensor by tensor,
    # and by a large factor overall (the model was made uneven by up to 400x between channels).
    tensors = conv_tensors(fp32)
    spans_before, spans_after = (
        channel_spans(onnx.load(str(fp32)), tensors, batches),
        channel_spans(onnx.load(str(tmp_path / "eq.onnx")), tensors, batches),
    )

    def worst_share(spans):
        return np.array([spans[name].min() / spans[name].max() for name in tensors])

    assert np.all(worst_share(spans_after) >= worst_share(spans_before) * 0.999)
    assert np.exp(np.mean(np.log(worst_share(spans_after) / worst_share(spans_before)))) > 2


def test_channels_that_feed_a_sigmoid_or_leave_the_graph_keep_their_scale(tmp_path):
    """conv A -> Tanh -> conv B -> LeakyReLU -> conv C -> output: B's rows (and C's columns) may move; A's rows
    (Tanh is not homogeneous) and C's rows (the graph output) may not. PAN's gate convs feed a sigmoid."""
    rng = np.random.default_rng(0)

    def conv(name, source, out_channels, in_channels):
        weight = rng.normal(size=(out_channels, in_channels, 3, 3)).astype(np.float32)
        weight *= np.geomspace(0.01, 1, out_channels, dtype=np.float32)[:, None, None, None]
        return (
            helper.make_node("Conv", [source, f"{name}.w"], [name], name=name, pads=[1, 1, 1, 1]),
            numpy_helper.from_array(weight, f"{name}.w"),
        )

    (a, wa), (b, wb), (c, wc) = conv("a", INPUT_NAME, 4, 3), conv("b", "ta", 4, 4), conv("c", "lb", 3, 4)
    graph = helper.make_graph(
        [a, helper.make_node("Tanh", ["a"], ["ta"]), b, helper.make_node("LeakyRelu", ["b"], ["lb"], alpha=0.2), c],
        "g",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, "h", "w"])],
        [helper.make_tensor_value_info("c", TensorProto.FLOAT, [1, 3, "h", "w"])],
        [wa, wb, wc],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, tmp_path / "g.onnx")
    batches = [rng.random((1, 3, 16, 16), dtype=np.float32)]
    equalize(tmp_path / "g.onnx", tmp_path / "eq.onnx", batches)
    weights = {t.name: numpy_helper.to_array(t) for t in onnx.load(str(tmp_path / "eq.onnx")).graph.initializer}
    np.testing.assert_array_equal(weights["a.w"], numpy_helper.to_array(wa))  # Tanh's input: untouched
    row_ratio = (weights["b.w"] / numpy_helper.to_array(wb)).reshape(4, -1)
    assert not np.allclose(row_ratio, 1)  # B's rows moved ...
    np.testing.assert_allclose(row_ratio, row_ratio[:, :1] * np.ones_like(row_ratio))  # ... one factor per row
    column_ratio = weights["c.w"] / numpy_helper.to_array(wc)
    expected = np.broadcast_to(1 / row_ratio[:, 0][None, :, None, None], column_ratio.shape)  # C's columns undo it
    np.testing.assert_allclose(column_ratio, expected, rtol=1e-5)

    groups, fixed, _ = channel_groups(onnx.load(str(uneven_fp32(tmp_path, "pan"))))
    gates = [n.output[0] for n in onnx.load(str(tmp_path / "pan.onnx")).graph.node if n.name.endswith("gate/Conv")]
    assert gates and all(groups.find((gate, c)) in fixed for gate in gates for c in range(4))


def test_input_is_quantized_losslessly_and_float_ops_read_float(tmp_path):
    fp32 = uneven_fp32(tmp_path, "pan")
    int8 = tmp_path / "int8.onnx"
    to_int8(fp32, int8, calibration_images=default_calibration(scale=2))
    graph = onnx.load(str(int8)).graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    (quantize,) = [n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == INPUT_NAME]
    scale, zero_point = constants[quantize.input[1]], constants[quantize.input[2]]
    assert scale == np.float32(1 / 255) and zero_point == 0
    levels = np.arange(256, dtype=np.float32) / 255  # every 8-bit value comes back as itself
    np.testing.assert_array_equal(np.clip(np.round(levels / scale) + zero_point, 0, 255) - zero_point, np.arange(256))

    producers = {output: node for node in graph.node for output in node.output}
    (skip,) = [
        n
        for n in graph.node
        if n.op_type == "Resize"
        and helper.get_attribute_value(next(a for a in n.attribute if a.name == "mode")) == b"linear"
    ]
    assert skip.input[0] == INPUT_NAME  # the bilinear skip reads the image, not its int8 copy
    for node in graph.node:
        if node.op_type in ("Add", "Resize", "Mul", "LeakyRelu", "Sigmoid"):
            for name in node.input:
                if name in producers and producers[name].op_type == "DequantizeLinear":
                    source = producers[producers[name].input[0]].input[0]  # DequantizeLinear <- QuantizeLinear <- x
                    assert producers[source].op_type == "Conv", (node.name, name)
    # Nothing dangles: every quantize/dequantize node is read.
    read = {name for node in graph.node for name in node.input} | {v.name for v in graph.output}
    assert all(set(node.output) & read for node in graph.node)


def test_channels_whose_count_shape_inference_leaves_open_are_not_rescaled(tmp_path):
    """conv A -> Resize with scales computed at run time (shape inference cannot give the output's channels) ->
    conv B: A's rows must stay, or B could not undo them (it did not, before this rule: output off by 6.6)."""
    rng = np.random.default_rng(0)
    weight_a = (rng.normal(size=(4, 3, 3, 3)) * np.geomspace(0.01, 1, 4)[:, None, None, None]).astype(np.float32)
    weight_b = rng.normal(size=(3, 4, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", [INPUT_NAME, "a.w"], ["a"], name="a", pads=[1, 1, 1, 1]),
        helper.make_node("Identity", ["factors"], ["scales"]),  # not a constant any more for shape inference
        helper.make_node("Resize", ["a", "", "scales"], ["r"], mode="nearest"),
        helper.make_node("Conv", ["r", "b.w"], ["b"], name="b", pads=[1, 1, 1, 1]),
    ]
    initializers = [
        numpy_helper.from_array(weight_a, "a.w"),
        numpy_helper.from_array(weight_b, "b.w"),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "factors"),
    ]
    image = helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, 3, "h", "w"])
    graph = helper.make_graph(
        nodes, "g", [image], [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)], initializers
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "g.onnx")
    batch = rng.random((1, 3, 8, 8), dtype=np.float32)
    assert equalize(tmp_path / "g.onnx", tmp_path / "eq.onnx", [batch]) == 0  # raises if the function changed
    np.testing.assert_array_equal(run(tmp_path / "eq.onnx", batch), run(tmp_path / "g.onnx", batch))
