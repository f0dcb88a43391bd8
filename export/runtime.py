"""Running an exported model with onnxruntime alone: no PyTorch here, on purpose.

`export/upscale.py` deploys with onnxruntime, numpy, Pillow and tqdm only, so this module must never import
torch (a test runs it with torch imports blocked). `onnx` is used for `onnx.checker` when it is installed; without
it the input/output checks run on the onnxruntime session alone.

The ONNX contract of our exports (export/to_onnx.py writes it, `check_model` enforces it):
    input  "lr": (N, 3, H, W) float32, RGB, values in [0, 1]
    output "sr": (N, 3, H*scale, W*scale) float32, same layout and range (not clamped: clamp before rounding)
    metadata_props: model, scale, layout, value_range, precision (+ hyper-parameters, exporter, opset).
"""

import functools
import json
import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tqdm import tqdm

from export.kernels import warn_unchecked_family  # numpy and onnx only
from sr_models.ensemble import self_ensemble  # numpy only
from sr_models.errors import UserError
from sr_models.evaluation.metrics import to_uint8  # numpy only

INPUT_NAME = "lr"
OUTPUT_NAME = "sr"
METADATA_FORMAT = "sr-toolkit-onnx/1"
LAYOUT = "NCHW RGB"
VALUE_RANGE = "[0, 1]"

# Tiles are cut in LR pixels; by default each tile's output is about 1024x1024 (256 LR px at x4), since the
# activations at output resolution dominate the working memory, so a 4K input stays under 2 GB. 16 px of context on
# each side is past the point where the tile border changes the output measurably (docs/export.md has both figures;
# tests/test_export_runtime.py asserts >= 50 dB tiled against untiled).
TILE_OUTPUT_PIXELS = 1024
DEFAULT_TILE_PAD = 16


# Inputs run once when a model is opened, to check what the graph does (odd, non-square, two batch sizes).
PROBE_SHAPES = ((1, 3, 9, 7), (2, 3, 6, 10))
# Those tiny inputs take milliseconds through any SR network; a
# probe still running after this long is a graph that loops, not a model that computes (a 500-byte file with a
# Loop of 2^62 trips otherwise hangs the command at open). Generous, for a slow or loaded machine.
PROBE_SECONDS = 30
# A Loop whose trip count is a constant above this is refused before anything runs (no SR network iterates).
MAX_LOOP_TRIPS = 10_000
# On the CPU the probe runs in a session whose memory arena cannot grow past this (or past the command's own memory
# limit, when it gives one: upscale and evaluate): any SR network needs a few MB for those inputs (PAN x4 and
# SRResNet x4 under 10 MB), while a 300-byte graph of one Resize x2048 asks for 3 GB and larger factors for all the
# machine has. A shape computed at run time is bounded too, unlike shape inference.
PROBE_MEMORY_BYTES = 1 << 30

# A raw output this far outside [0, 1] is not a slightly bright pixel but a model failing on its input (the PAN
# authors' x4 weights reach +-2e6 on part of skimage's coffee.png): warn instead of clamping it silently.
SUSPECT_MARGIN = 0.5


def default_tile(scale):
    return max(32, TILE_OUTPUT_PIXELS // scale)


PYTORCH_WEIGHTS = (".safetensors", ".pth", ".pt", ".ckpt", ".bin")


class OnnxModelError(UserError):
    """An ONNX file that cannot be deployed; the message names the file and the problem."""


def _one_line(error):
    return " ".join(str(error).split())[:300] or type(error).__name__


def check_io(path, inputs, outputs):
    """`inputs`/`outputs`: lists of (name, rank). Ours have exactly one "lr" and one "sr", both rank 4 (NCHW)."""
    for role, found, expected in (("input", inputs, INPUT_NAME), ("output", outputs, OUTPUT_NAME)):
        if len(found) != 1 or found[0][0] != expected or found[0][1] != 4:
            shown = ", ".join(f"{name!r} (rank {rank})" for name, rank in found) or "none"
            raise OnnxModelError(
                f"{path}: expected one {role} named {expected!r} of rank 4 (N, 3, H, W), found {shown}; "
                "export the model with export/to_onnx.py"
            )


def check_model(path):
    """Validate an ONNX file before a session is built: onnx.checker (when `onnx` is installed) and our I/O."""
    path = Path(path)
    if not path.is_file():
        raise OnnxModelError(f"{path}: no such file")
    if path.suffix.lower() in PYTORCH_WEIGHTS:  # a common first try: deployment runs ONNX files only
        raise OnnxModelError(
            f"{path}: PyTorch weights, not an ONNX model; export them first: "
            f"python export/to_onnx.py --weights {path} --output {path.with_suffix('.onnx')}"
        )
    try:
        import onnx
    except ImportError:  # a deployment without the onnx package: the session checks below still run
        return
    try:
        onnx.checker.check_model(str(path))  # the path form also handles models with external data
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # checker.ValidationError, protobuf DecodeError, OSError: all mean "not usable"
        raise OnnxModelError(f"{path}: not a valid ONNX model ({_one_line(error)})") from None
    check_loops(path, model.graph)
    initializers = {tensor.name for tensor in model.graph.initializer}
    rank = lambda value: len(value.type.tensor_type.shape.dim)  # noqa: E731
    check_io(
        path,
        [(v.name, rank(v)) for v in model.graph.input if v.name not in initializers],
        [(v.name, rank(v)) for v in model.graph.output],
    )


def check_loops(path, graph):
    """Refuse a Loop with a constant trip count above MAX_LOOP_TRIPS, in the graph or any subgraph, before it runs.
    (A trip count computed at run time is bounded by the probe's time limit instead: OnnxUpscaler._probe.)"""
    import onnx

    constants = {tensor.name: tensor for tensor in graph.initializer}
    constants.update(
        {
            node.output[0]: attribute.t
            for node in graph.node
            if node.op_type == "Constant"
            for attribute in node.attribute
            if attribute.name == "value"
        }
    )
    for node in graph.node:
        if node.op_type == "Loop" and node.input and node.input[0] in constants:
            trips = onnx.numpy_helper.to_array(constants[node.input[0]])
            if trips.size == 1 and int(trips.reshape(-1)[0]) > MAX_LOOP_TRIPS:
                raise OnnxModelError(
                    f"{path}: a Loop node ({node.name or 'unnamed'}) runs {int(trips.reshape(-1)[0]):,} "
                    f"times (more than {MAX_LOOP_TRIPS:,}): not an upscaling network"
                )
        for attribute in node.attribute:
            for subgraph in ([attribute.g] if attribute.HasField("g") else []) + list(attribute.graphs):
                check_loops(path, subgraph)


def largest_tensor(path, height, width):
    """(bytes, op type) of the largest tensor of the graph at `path` whose size ONNX shape inference (with data
    propagation) fixes for a 1x3xheightxwidth input: what the model allocates at least, before it runs. Sizes
    computed at run time are not known here ((0, None) when none is, or without the `onnx` package); the probes'
    bounded arena covers those at the probe's size."""
    try:
        import onnx
        from onnx import helper, shape_inference
    except ImportError:
        return 0, None
    model = onnx.load(str(path), load_external_data=False)  # check_model has read it already: it loads
    inline_constants(model.graph)
    for value in model.graph.input:
        if value.name == INPUT_NAME:
            for dim, size in zip(value.type.tensor_type.shape.dim, (1, 3, height, width)):
                dim.Clear()
                dim.dim_value = size
    try:
        inferred = shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # onnx's own errors on graphs it cannot follow: nothing is known, the probes still run
        return 0, None
    producers = {name: node.op_type for node in inferred.graph.node for name in node.output}
    largest = (0, None)
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
        if not tensor.HasField("shape") or None in dims or tensor.elem_type == onnx.TensorProto.UNDEFINED:
            continue
        try:
            size = math.prod(dims) * helper.tensor_dtype_to_np_dtype(tensor.elem_type).itemsize
        except (KeyError, TypeError):  # a string or other non-numeric type: not an activation
            continue
        if size > largest[0]:
            largest = (size, producers.get(value.name))
    return largest


def inline_constants(graph):
    """Constant nodes, and Identity nodes of constants, become initializers: shape inference reads a Resize's scales
    or a Reshape's shape only from an initializer, and a graph need not spell them as one."""
    import onnx

    constants = {tensor.name: tensor for tensor in graph.initializer}
    kept = []
    for node in graph.node:
        value = None
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            value = node.attribute[0].t
        elif node.op_type == "Identity" and node.input and node.input[0] in constants:
            value = constants[node.input[0]]
        if value is None or not node.output:
            kept.append(node)
            continue
        tensor = onnx.TensorProto()
        tensor.CopyFrom(value)
        tensor.name = node.output[0]
        constants[tensor.name] = tensor
        graph.initializer.append(tensor)
    del graph.node[:]
    graph.node.extend(kept)


def choose_providers(device=None):
    """onnxruntime execution providers for `device`: None/"auto" (CUDA when present), "cpu", "cuda", "cuda:N"."""
    available = ort.get_available_providers()
    device = "auto" if device is None else str(device)
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "auto":
        device = "cuda" if "CUDAExecutionProvider" in available else "cpu"
        return choose_providers(device)
    kind, _, index = device.partition(":")
    if kind == "cuda" and (index == "" or index.isdigit()):
        if "CUDAExecutionProvider" not in available:
            raise UserError(
                f"--device {device!r}: this onnxruntime has no CUDA provider (pip install "
                "onnxruntime-gpu on a CUDA machine); use --device cpu or auto"
            )
        return [("CUDAExecutionProvider", {"device_id": int(index or 0)}), "CPUExecutionProvider"]
    raise UserError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N")


OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


_bounded_arena = {}  # onnxruntime's environment holds one shared CPU allocator: registered once per process


def use_bounded_arena(options, limit):
    """Make a CPU session built with `options` allocate from a shared arena of at most `limit` bytes (the first
    limit asked for in this process: onnxruntime registers one environment allocator): an allocation past it fails
    that run with an error instead of taking the machine's memory. Returns the limit in force. Measured on PAN x4
    fp32 (288x288 tiles, 1 thread, Zen 4 EPYC): the same time per tile as onnxruntime's own arena, a lower peak."""
    if not _bounded_arena:
        memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
        # max_mem, then kSameAsRequested (grow by what is asked, so the bound is exact); -1: onnxruntime's defaults
        ort.create_and_register_allocator(memory, ort.OrtArenaCfg(int(limit), 1, -1, -1))
        _bounded_arena["limit"] = int(limit)
    options.add_session_config_entry("session.use_env_allocators", "1")
    return _bounded_arena["limit"]


def arena_refusal(error):
    """(op type, bytes asked) when onnxruntime's error is the bounded arena refusing an allocation, else None."""
    asked = re.search(r"running (\S+) node.*smaller than requested bytes of (\d+)", str(error), re.S)
    return (asked[1], int(asked[2])) if asked else None


def create_session(
    path, *, device=None, optimization="all", threads=None, optimized_model_path=None, bounded_memory=None
):
    """A validated onnxruntime session for one of our ONNX files.

    `optimization` is one of OPTIMIZATION_LEVELS; `optimized_model_path` saves the optimized graph (offline
    optimization: load that file later with optimization="disable"). `bounded_memory` (bytes): a CPU session whose
    runs fail past that many bytes (use_bounded_arena; `session.memory_limit` says the limit in force), for running
    a file not yet known to be an SR network.
    """
    check_model(path)
    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[optimization]
    # Fatal only: onnxruntime's warnings are about its internals, and each error it logs is raised to us too and
    # reported in one line (a failed load logged "[E:onnxruntime:...] Exception during initialization" beside it).
    options.log_severity_level = 4
    ort.set_default_logger_severity(4)
    if threads:
        options.intra_op_num_threads = threads
    if optimized_model_path:
        options.optimized_model_filepath = str(optimized_model_path)
    providers = choose_providers(device)  # an unusable --device is the user's to fix, not the file's
    limit = None
    if bounded_memory:
        # On CUDA a run past the device's memory already fails with an error; the host's memory is what needs a bound.
        assert providers == ["CPUExecutionProvider"], "the bounded arena is a CPU allocator"
        limit = use_bounded_arena(options, bounded_memory)
    try:
        session = ort.InferenceSession(str(path), options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidGraph, NotImplemented)
        raise OnnxModelError(f"{path}: onnxruntime cannot load it ({_one_line(error)})") from None
    session.memory_limit = limit
    # Repeated on the session: it is the only check where the onnx package is not installed.
    check_io(
        path,
        [(i.name, len(i.shape)) for i in session.get_inputs()],
        [(o.name, len(o.shape)) for o in session.get_outputs()],
    )
    return session


def read_metadata(session):
    """metadata_props of the model as a dict of strings ({} for a model exported elsewhere)."""
    return dict(session.get_modelmeta().custom_metadata_map)


def run_options():
    """Options for one run. onnxruntime keeps its memory arena at the largest size a run needed; shrinking it after
    each run returns a tile's working memory before the next file is saved (and lowered the per-tile peak:
    docs/export.md)."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    options.log_severity_level = 4  # a failed run is raised to us (and reported in one line), not logged too
    return options


class StillRunning(Exception):
    """run_in_thread's time limit passed while onnxruntime was still running."""


RUN_THREAD_NAME = "onnxruntime-run"


def run_in_thread(session, feed, options, *, seconds=None):
    """`session.run` for our one output, in a daemon thread of its own while the calling thread waits on it.

    The waiting thread stays free: a signal reaches the command at once, instead of when the run ends (a single
    node can run for minutes), and `seconds` bounds the run even inside one node (StillRunning). Either way
    onnxruntime is told to stop (RunOptions.terminate, checked between nodes), and a node still running is left to
    its thread, which the command's exit ends (sr_models.files.writer_command).
    """
    done = {}

    def work():
        try:
            done["output"] = session.run([OUTPUT_NAME], feed, options)
        except BaseException as error:  # raised again in the calling thread
            done["error"] = error

    worker = threading.Thread(target=work, name=RUN_THREAD_NAME, daemon=True)
    worker.start()
    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        while worker.is_alive():
            wait = 0.1 if deadline is None else min(0.1, deadline - time.monotonic())
            if wait <= 0:
                raise StillRunning()
            worker.join(wait)
    except BaseException:
        options.terminate = True
        raise
    if "error" in done:
        raise done["error"]
    return done["output"]


def split_evenly(length, tile):
    """[(start, stop)] covering range(length) in ceil(length / tile) near-equal parts (no thin last sliver)."""
    count = max(1, -(-length // tile))
    bounds = [round(i * length / count) for i in range(count + 1)]
    return list(zip(bounds[:-1], bounds[1:]))


class OnnxUpscaler:
    """An exported model as an upscaler of uint8 images: `upscaler(lr)` with lr (h, w, 3) uint8 -> (h*s, w*s, 3).

    Images larger than `tile` LR pixels in either direction are cut into tiles of at most `tile` x `tile`, each
    run with `tile_pad` pixels of real image context around it (the inputs overlap by 2 * tile_pad); only each
    tile's own region is kept. A pixel then sees the same neighbourhood as in a whole-image run, so the seams
    vanish instead of being blended over, and memory depends on the tile, not the image. `tile="auto"`:
    `default_tile(scale)`; `tile=None` or 0: no tiling. `self_ensemble=True` runs each tile as the mean of its 8
    flips/rotations (sr_models.ensemble), 8 times the compute, the same memory bound.
    """

    def __init__(
        self,
        path,
        *,
        device=None,
        tile="auto",
        tile_pad=DEFAULT_TILE_PAD,
        progress=False,
        optimization="all",
        threads=None,
        self_ensemble=False,
        memory_limit=None,
    ):
        """`memory_limit` (bytes; upscale and evaluate give their --max-memory limit): on the CPU every run, the
        probes included, fails past it in one line instead of taking the machine's memory. Without it the probes
        alone are bounded, by PROBE_MEMORY_BYTES, in a session of their own."""
        self.path = Path(path)
        cpu = choose_providers(device) == ["CPUExecutionProvider"]
        self.session = create_session(
            path,
            device=device,
            optimization=optimization,
            threads=threads,
            bounded_memory=memory_limit if cpu else None,
        )
        on_cpu = self.session.get_providers()[0] == "CPUExecutionProvider"
        self.probe_session = self.session
        if on_cpu and not memory_limit:
            self.probe_session = create_session(
                path, device="cpu", optimization=optimization, threads=threads, bounded_memory=PROBE_MEMORY_BYTES
            )
        self.metadata = read_metadata(self.session)
        if on_cpu:  # int8 arithmetic differs by CPU family
            warn_unchecked_family(self.path, self.metadata)
        # fp32 I/O in our fp16 exports; a foreign model with fp16 I/O still works.
        self.input_dtype = np.float16 if self.session.get_inputs()[0].type == "tensor(float16)" else np.float32
        self.scale = self._checked_scale()
        del self.probe_session  # its arena chunks go back to the shared bounded arena
        self.tile = default_tile(self.scale) if tile == "auto" else (tile or None)
        self.tile_pad = tile_pad
        self.progress = progress
        self.self_ensemble = self_ensemble
        precision = self.metadata.get("precision", "fp32")
        self.name = f"{self.metadata.get('model', self.path.stem)} (onnx {precision})"
        if self_ensemble:
            self.name += " +self-ensemble"

    def _checked_scale(self):
        """The scale the graph really applies, checked against what the file claims before any image is run.

        Two small inputs of different batch, height and width go through the model: a static-shape graph fails
        here, and so does metadata that claims another scale than the graph computes (an x4 model labelled x2 would
        otherwise write the top-left quarter of its output as the "x2" image).
        """
        observed = set()
        for shape in PROBE_SHAPES:
            batch, _, height, width = shape
            out_shape = self._probe(np.zeros(shape, np.float32)).shape
            scale = out_shape[2] // height if len(out_shape) == 4 else 0
            if len(out_shape) != 4 or out_shape != (batch, 3, height * scale, width * scale) or scale < 1:
                raise OnnxModelError(
                    f"{self.path}: a {batch}x3x{height}x{width} input gave an output of shape "
                    f"{tuple(out_shape)}, not (N, 3, H*scale, W*scale)"
                )
            observed.add(scale)
        if len(observed) != 1:
            raise OnnxModelError(f"{self.path}: the upscale factor depends on the input size ({sorted(observed)})")
        (scale,) = observed
        claimed = self.metadata.get("scale")
        if claimed is not None and claimed != str(scale):
            raise OnnxModelError(
                f"{self.path}: its metadata says scale {claimed!r}, but the graph upscales by "
                f"{scale}; the file is mislabelled, re-export it with export/to_onnx.py"
            )
        return scale

    def _probe(self, batch):
        """One run of a probe input, stopped (onnxruntime's RunOptions.terminate) after PROBE_SECONDS, in the
        probe session (on the CPU its memory is bounded by PROBE_MEMORY_BYTES)."""
        shape = "x".join(map(str, batch.shape))
        try:
            (output,) = run_in_thread(
                self.probe_session, {INPUT_NAME: batch.astype(self.input_dtype)}, run_options(), seconds=PROBE_SECONDS
            )
        except StillRunning:
            raise OnnxModelError(
                f"{self.path}: still running on a {shape} probe input after {PROBE_SECONDS} s "
                "(a loop in the graph?): not an upscaling network"
            ) from None
        except Exception as error:  # onnxruntime's own exception types: a fixed input size, a broken graph
            asked = arena_refusal(error)
            if asked:  # the bounded arena's refusal (BFCArena), not a broken graph
                raise OnnxModelError(
                    f"{self.path}: a {asked[0]} node asks for {asked[1] / 2**30:.1f} GiB on a "
                    f"{shape} probe input (an SR network needs a few MB; the limit is "
                    f"{self.probe_session.memory_limit >> 20} MiB): not an upscaling network"
                ) from None
            # onnxruntime's words for an input of another size than a static shape: then the advice is the export
            fixed = "invalid dimensions" in str(error).lower() or "invalid rank" in str(error).lower()
            advice = (
                "; it needs dynamic batch, height and width: export it with export/to_onnx.py"
                if fixed
                else ": not usable as an upscaler"
            )
            raise OnnxModelError(
                f"{self.path}: the model does not run on a {shape} input ({_one_line(error)}){advice}"
            ) from None
        return np.asarray(output)

    @functools.lru_cache(maxsize=64)  # noqa: B019 (a session lives as long as its model: nothing leaks)
    def graph_memory(self, height, width):
        """(bytes, op type): the largest tensor the graph is known to allocate on a height x width input
        (largest_tensor), for the callers' memory estimate before an image is run."""
        return largest_tensor(self.path, height, width)

    @property
    def spec(self):
        """The model spec stored at export: {"name", "scale", **hyper-parameters} ({} when not ours)."""
        if "model" not in self.metadata:
            return {}
        return {"name": self.metadata["model"], "scale": self.scale, **json.loads(self.metadata.get("spec", "{}"))}

    def run(self, batch, *, image=None):
        """(N, 3, h, w) float32 in [0, 1] -> (N, 3, h*scale, w*scale) float32, one onnxruntime call, unclamped.

        A failure in onnxruntime (an op that rejects this size, memory, a broken graph) is an OnnxModelError naming
        the model and `image` (the file the batch comes from, when the caller knows it)."""
        feed = {INPUT_NAME: batch.astype(self.input_dtype, copy=False)}
        try:
            # Options of its own (run_options: the arena shrunk after the run), as an interrupt sets terminate on them.
            (output,) = run_in_thread(self.session, feed, run_options())
        except Exception as error:  # onnxruntime's own exception types (Fail, RuntimeException, InvalidArgument)
            on = (
                f"{image} ({'x'.join(map(str, batch.shape))} input)"
                if image
                else f"a {'x'.join(map(str, batch.shape))} input"
            )
            asked = arena_refusal(error)
            if asked:  # the bounded arena (memory_limit) refused it: the model asks more than the command may use
                raise OnnxModelError(
                    f"{self.path}: on {on}, a {asked[0]} node asks for {asked[1] / 2**30:.1f} GiB, "
                    f"more than the {self.session.memory_limit / 2**30:.1f} GiB this command may use "
                    "(--max-memory, or the machine's available memory); pass a larger --max-memory "
                    "if the machine has it, or a smaller --tile"
                ) from None
            raise OnnxModelError(f"{self.path}: onnxruntime failed on {on}: {_one_line(error)}") from None
        return output.astype(np.float32, copy=False)

    def tiles(self, height, width):
        """[(y0, y1, x0, x1)]: the LR regions whose outputs make up the image."""
        if not self.tile or (height <= self.tile and width <= self.tile):
            return [(0, height, 0, width)]
        rows, columns = split_evenly(height, self.tile), split_evenly(width, self.tile)
        return [(y0, y1, x0, x1) for y0, y1 in rows for x0, x1 in columns]

    def __call__(self, lr, *, image=None):
        """`image`: the file `lr` was read from, named if onnxruntime fails on it."""
        lr = np.asarray(lr)
        if lr.ndim != 3 or lr.shape[2] != 3 or lr.dtype != np.uint8:
            raise ValueError(f"{self.path.name}: expected an (h, w, 3) uint8 image, got {lr.shape} {lr.dtype}")
        height, width, _ = lr.shape
        s, pad = self.scale, self.tile_pad
        sr = np.empty((height * s, width * s, 3), np.uint8)  # the only full-size buffer
        self.suspect = SuspectOutput()
        regions = self.tiles(height, width)
        for y0, y1, x0, x1 in tqdm(
            regions, desc="tiles", unit="tile", leave=False, disable=not self.progress or len(regions) == 1
        ):
            # The tile plus up to `pad` pixels of real context (none past the image border, as in a whole run).
            cy0, cy1, cx0, cx1 = max(y0 - pad, 0), min(y1 + pad, height), max(x0 - pad, 0), min(x1 + pad, width)
            x = lr[cy0:cy1, cx0:cx1].transpose(2, 0, 1)[None].astype(np.float32) / 255  # (1, 3, h, w)
            run = lambda batch: self.run(batch, image=image)  # noqa: E731
            out = (self_ensemble(run, x) if self.self_ensemble else run(x))[0]  # (3, h*s, w*s)
            keep = out[:, (y0 - cy0) * s : (y1 - cy0) * s, (x0 - cx0) * s : (x1 - cx0) * s]
            self.suspect.add(keep, top=y0 * s, left=x0 * s)
            # Clamp, *255, round exactly as the evaluation protocol (and TorchUpscaler) does, per tile.
            sr[y0 * s : y1 * s, x0 * s : x1 * s] = to_uint8(keep.transpose(1, 2, 0))
        return sr


class SuspectOutput:
    """Where a model's raw output strays far outside [0, 1] (see SUSPECT_MARGIN), over the tiles of one image."""

    def __init__(self):
        self.count, self.total = 0, 0
        self.low, self.high = np.inf, -np.inf
        self.box = None  # (top, left, bottom, right) in output pixels

    def add(self, out, *, top, left):
        """`out`: (3, h, w) raw output of the region whose top-left output pixel is (top, left)."""
        bad = ((out < -SUSPECT_MARGIN) | (out > 1 + SUSPECT_MARGIN) | ~np.isfinite(out)).any(axis=0)  # (h, w)
        self.total += bad.size
        if not bad.any():
            return
        rows, columns = np.nonzero(bad)
        self.count += len(rows)
        finite = out[np.isfinite(out)]
        if finite.size:
            self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))
        box = (
            top + int(rows.min()),
            left + int(columns.min()),
            top + int(rows.max()) + 1,
            left + int(columns.max()) + 1,
        )
        self.box = (
            box
            if self.box is None
            else (
                min(self.box[0], box[0]),
                min(self.box[1], box[1]),
                max(self.box[2], box[2]),
                max(self.box[3], box[3]),
            )
        )

    def __bool__(self):
        return self.count > 0

    def describe(self):
        top, left, bottom, right = self.box
        return (
            f"model output far outside [0, 1] (raw values {self.low:.3g} to {self.high:.3g}) at "
            f"{self.count / self.total:.2%} of pixels, in output region x {left}-{right}, y {top}-{bottom}: "
            "there the result is clamped noise, not an upscale"
        )
