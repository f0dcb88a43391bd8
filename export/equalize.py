"""Channel equalization: rescale conv channels so that int8 activations waste fewer of their 256 levels.

Why: onnxruntime quantizes each activation tensor with one (scale, zero point) for all its channels, so a channel
whose values span a tenth of the tensor's range gets about 3 bits fewer than the widest one. That is where the int8
loss of PAN comes from: with weights int8 and activations float the PSNR_Y drop is at most 0.05 dB on any held-out
image, with activations int8 it is 0.5 dB on cartoons; a simulation with one range per *channel* brings a cartoon
from 0.59 to 0.10 dB (docs/int8.md). onnxruntime has no per-channel activations, but the function a network
computes allows moving range between channels (Nagel et al. 2019, "Data-Free Quantization", cross-layer
equalization; SmoothQuant's migration strength for how far).

How: multiplying output channel c of a conv (its weight row and bias) by s > 0 and dividing the matching input
column of every conv that reads it leaves the network's output unchanged, provided every op in between is
positively homogeneous channel by channel: LeakyReLU, PReLU, ReLU, Resize, Add of two such tensors, a product with
a sigmoid gate, and Split / Concat / DepthToSpace, which only move channels around. Channels that such ops tie
together (a residual stream through its Adds, the halves of a Concat) share one s; a channel that reaches anything
else (a sigmoid's input, the graph's output, an op not listed, a tensor whose channel count shape inference leaves
open) keeps s = 1. Each free channel group gets
    s = (widest channel span / this channel's span) ** alpha
with spans measured on the calibration patches and compared within each tensor; a group that spans several
tensors takes its largest share (the tensor where it is already widest bounds how far it may grow).
alpha = 0.5: halfway to equal spans. Full equalization (alpha = 1) shrinks the next conv's weight columns as much as
it widens the activations; it measured worse for PAN (docs/int8.md).

The graph is rewritten on the fp32 ONNX model, so it serves any architecture exported from these ops; the node
names stay as they were, so convs kept float are named as before.
"""

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper

ALPHA = 0.5
MAX_SCALE = 16.0  # no channel moves by more than 4 bits, whatever the calibration patches showed
# Ops through which a channel's scale passes unchanged: y[c] = f(x[c]) with f(s * x) = s * f(x) for s > 0.
CHANNELWISE_HOMOGENEOUS = {"LeakyRelu", "Relu", "PRelu", "Resize", "Identity", "MaxPool", "AveragePool"}


class _Groups:
    """Union-find over (tensor name, channel) pairs: the pairs that must share one scale."""

    def __init__(self):
        self.parent = {}

    def find(self, item):
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def tie(self, a, b):
        self.parent[self.find(a)] = self.find(b)


def _attributes(node):
    return {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}


def _channel_counts(model):
    """Channel count (dim 1) of every 4-D tensor whose channels shape inference knows."""
    inferred = onnx.shape_inference.infer_shapes(model)
    counts = {}
    for value in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            counts[value.name] = dims[1].dim_value
    return counts


def channel_groups(model):
    """(groups, fixed roots, channel counts): which (tensor, channel) pairs share a scale and which must stay 1."""
    graph = model.graph
    initializers = {tensor.name for tensor in graph.initializer}
    counts = _channel_counts(model)
    sigmoid_outputs = {node.output[0] for node in graph.node if node.op_type == "Sigmoid"}
    weight_users = {}
    for node in graph.node:
        if node.op_type == "Conv":
            weight_users[node.input[1]] = weight_users.get(node.input[1], 0) + 1
    groups, fixed = _Groups(), set()

    def fix(*tensors):
        for tensor in tensors:
            fixed.update((tensor, c) for c in range(counts.get(tensor, 0)))

    def tie_channels(a, b, count, offset_a=0, offset_b=0):
        for c in range(count):
            groups.tie((a, offset_a + c), (b, offset_b + c))

    for node in graph.node:
        op, inputs, outputs, attrs = node.op_type, list(node.input), list(node.output), _attributes(node)
        data = (inputs if op in ("Add", "Sub", "Mul", "Concat") else inputs[:1]) + outputs
        if any(name not in counts for name in data):  # shape inference left a channel count open: no rescaling here
            fix(*data)
            continue
        if op == "Conv":
            # A conv scales its own rows and columns; only grouped convs and shared or computed weights cannot.
            if attrs.get("group", 1) != 1 or inputs[1] not in initializers or weight_users[inputs[1]] > 1:
                fix(inputs[0], outputs[0])
        elif op in CHANNELWISE_HOMOGENEOUS:
            tie_channels(inputs[0], outputs[0], counts.get(outputs[0], 0))
        elif (
            op in ("Add", "Sub")
            and len({counts.get(name) for name in inputs + outputs}) == 1
            and not set(inputs) & initializers
        ):
            for name in inputs:
                tie_channels(name, outputs[0], counts.get(outputs[0], 0))
        elif op == "Mul" and len(set(inputs) & sigmoid_outputs) == 1 and len(set(inputs)) == 2:
            gate = next(name for name in inputs if name in sigmoid_outputs)
            (value,) = [name for name in inputs if name != gate]
            fix(gate)  # the gate's scale is not free: sigmoid(s * x) != s * sigmoid(x)
            tie_channels(value, outputs[0], counts.get(outputs[0], 0))
        elif op == "Split" and attrs.get("axis") == 1:
            offset = 0
            for name in outputs:
                tie_channels(inputs[0], name, counts.get(name, 0), offset_a=offset)
                offset += counts.get(name, 0)
        elif op == "Concat" and attrs.get("axis") == 1:
            offset = 0
            for name in inputs:
                tie_channels(name, outputs[0], counts.get(name, 0), offset_b=offset)
                offset += counts.get(name, 0)
        elif op == "DepthToSpace" and attrs.get("mode", b"DCR") == b"CRD":
            block = attrs["blocksize"] ** 2  # output channel c gathers input channels c*r*r ... c*r*r + r*r - 1
            for c in range(counts.get(outputs[0], 0)):
                for k in range(block):
                    groups.tie((inputs[0], c * block + k), (outputs[0], c))
        else:  # anything else: its tensors keep their scale
            fix(*inputs, *outputs)
    fix(*(value.name for value in [*graph.input, *graph.output]))
    return groups, {groups.find(item) for item in fixed}, counts


def channel_spans(model, tensors, batches):
    """Per-channel span (max(x, 0) - min(x, 0), the range onnxruntime's calibration covers) of each tensor."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    del probe.graph.output[:]
    probe.graph.output.extend(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in tensors)
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    low, high = {}, {}
    for batch in batches:
        for name, value in zip(tensors, session.run(None, {model.graph.input[0].name: batch})):
            low[name] = np.minimum(low.get(name, 0), value.min(axis=(0, 2, 3)))
            high[name] = np.maximum(high.get(name, 0), value.max(axis=(0, 2, 3)))
    return {name: high[name] - low[name] for name in tensors}


def equalize(src, dst, batches, *, alpha=ALPHA):
    """Write `src` (fp32 ONNX) to `dst` with its conv channels equalized on `batches` ((N, 3, h, w) float32).

    Returns how many channel groups were rescaled. The output of `dst` equals that of `src` up to float rounding;
    this is checked on the first batch (a mismatch is a bug in the rules above, and raises).
    """
    model = onnx.load(str(src))
    groups, fixed_roots, counts = channel_groups(model)
    weights = {tensor.name: tensor for tensor in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    quantized = sorted(({node.input[0] for node in convs} | {node.output[0] for node in convs}) & set(counts))
    spans = channel_spans(model, quantized, batches)

    share = {}  # group -> its largest (channel span / widest channel span of the same tensor) over its tensors
    for name, span in spans.items():
        for channel, ratio in enumerate(span / max(float(span.max()), 1e-12)):
            root = groups.find((name, channel))
            if root not in fixed_roots:
                share[root] = max(share.get(root, 0.0), float(ratio))
    scales = {
        root: float(np.clip(max(ratio, 1e-12) ** -alpha, 1 / MAX_SCALE, MAX_SCALE)) for root, ratio in share.items()
    }

    def scale_of(tensor, count):
        return np.array([scales.get(groups.find((tensor, c)), 1.0) for c in range(count)], dtype=np.float32)

    for node in convs:
        weight = numpy_helper.to_array(weights[node.input[1]])
        rows, columns = scale_of(node.output[0], weight.shape[0]), scale_of(node.input[0], weight.shape[1])
        if np.all(rows == 1) and np.all(columns == 1):
            continue
        weight = weight * rows[:, None, None, None] / columns[None, :, None, None]
        weights[node.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(np.float32), node.input[1]))
        if len(node.input) > 2 and node.input[2]:
            bias = numpy_helper.to_array(weights[node.input[2]]) * rows
            weights[node.input[2]].CopyFrom(numpy_helper.from_array(bias.astype(np.float32), node.input[2]))
    onnx.save(model, str(dst))
    _check_same_function(src, dst, batches[0])
    return sum(scale != 1.0 for scale in scales.values())


def _check_same_function(src, dst, batch):
    name = onnx.load(str(src), load_external_data=False).graph.input[0].name
    before, after = (
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {name: batch})[0]
        for path in (src, dst)
    )
    error = float(np.abs(before - after).max())
    if error > 1e-4 * max(1.0, float(np.abs(before).max())):
        raise RuntimeError(
            f"channel equalization changed the model's output by {error:.3g}: a rule in "
            f"export/equalize.py does not hold for this graph"
        )
