"""How fast is each way of running PAN and SRResNet? Median time to upscale one 256x256 input x4.

    python bench/onnx_speed.py                          # all sections, both models, this machine's threads
    python bench/onnx_speed.py --sections main --repeats 11 --json bench.json

Sections:
    main          PyTorch eager NCHW, PyTorch channels_last, onnxruntime fp32, int8 (fp16 when CUDA is present)
    forms         the traced graph (einops as Reshape/Transpose) against the graph-friendly export (DepthToSpace,
                  Split/Concat, SRResNet's tail conv before its last shuffle; export/convert.py), fp32 and int8
    optimization  onnxruntime graph optimization levels, and an offline-optimized model loaded with none

Variants of a section are timed in turn, round after round, so load from other processes spreads over all of
them; each figure is the median (and min) over rounds of one call's wall time, after two warm-up calls. CPU time
is printed too: it is less sensitive to a busy machine. The ONNX files are built with the same functions and
defaults as export/to_onnx.py (int8: its default calibration images and float convs); parity is to_onnx.py's job.
PAN uses the authors' x4 weights when ../shared is present (speed does not depend on them otherwise); SRResNet
is randomly initialised at its paper width (64 channels, 16 blocks).
"""

import argparse
import copy
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from export.content import default_calibration
from export.convert import export_fp32
from export.kernels import detect_cpu, int8_pays, kernel_family
from export.quantize import default_keep_float, default_percentile, to_fp16, to_int8
from export.runtime import INPUT_NAME, OUTPUT_NAME, create_session
from sr_models import create_model
from sr_models.errors import user_errors
from sr_models.weights import load_model

PAN_WEIGHTS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "weights" / "PANx4_DF2K.pth"


def build_models():
    pan = load_model(PAN_WEIGHTS, name="pan", scale=4) if PAN_WEIGHTS.is_file() else create_model("pan", scale=4)
    torch.manual_seed(0)
    return {"pan": pan.eval(), "srresnet": create_model("srresnet", scale=4).eval()}


def torch_runner(model, x, *, channels_last=False):
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    model = copy.deepcopy(model).to(memory_format=memory_format)  # .to() converts in place: keep the original
    x = torch.from_numpy(x).contiguous(memory_format=memory_format)

    def run():
        with torch.inference_mode():
            model(x)

    return run


THREADS = None  # --threads: the same intra-op thread count for PyTorch and onnxruntime (None: their defaults)


def onnx_runner(path, x, **session_options):
    device = "cpu" if session_options.pop("cpu", True) else None
    session = create_session(path, device=device, threads=THREADS, **session_options)
    return lambda: session.run([OUTPUT_NAME], {INPUT_NAME: x})


def time_variants(runners, *, repeats):
    """{name: (median wall s, min wall s, median cpu s)} timing every runner once per round."""
    for run in runners.values():
        run(), run()  # warm-up: first-call allocation and kernel selection
    wall = {name: [] for name in runners}
    cpu = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), min(wall[name]), statistics.median(cpu[name])) for name in runners}


def print_table(title, results, reference=None):
    """One table; its title names the CPU (model, ISA flags, int8 kernel family): int8's speed-up depends on it."""
    cpu = detect_cpu()
    print(f"\n{title}; {cpu.describe()}, int8 kernel family {kernel_family(cpu)}, {THREADS or 'default'} threads")
    print("| variant | median (ms) | min (ms) | CPU median (ms) |" + (" vs reference |" if reference else ""))
    print("|---|---:|---:|---:|" + ("---:|" if reference else ""))
    for name, (median, best, cpu) in results.items():
        ratio = f" {results[reference][0] / median:.2f}x |" if reference else ""
        print(f"| {name} | {median * 1000:.0f} | {best * 1000:.0f} | {cpu * 1000:.0f} |{ratio}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="input height and width (default 256)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--models", nargs="+", default=["pan", "srresnet"])
    parser.add_argument("--sections", nargs="+", default=["main", "forms", "optimization"])
    parser.add_argument(
        "--threads",
        type=int,
        help="threads for both runtimes (default: theirs, one per core); "
        "1 is steadier on a machine shared with other jobs",
    )
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args(argv)
    global THREADS
    if args.threads:
        THREADS = args.threads
        torch.set_num_threads(args.threads)

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    cpu = detect_cpu()
    if not int8_pays(cpu):
        print(f"{cpu.describe()}: no VNNI/AMX, expect int8 about as fast as fp32 (docs/int8.md)")
    print(
        f"machine: {cpu.describe()}, {torch.get_num_threads()} torch threads, "
        f"torch {torch.__version__}, onnxruntime {ort.__version__}, "
        f"providers {ort.get_available_providers()}"
    )
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), dtype=np.float32)
    calibration = default_calibration(scale=4)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="sr-bench-") as scratch:
        for name, model in build_models().items():
            if name not in args.models:
                continue
            files = {}
            for form, friendly in (("friendly", True), ("einops", False)):
                files[f"fp32 {form}"] = Path(scratch) / f"{name}_{form}.onnx"
                export_fp32(model, files[f"fp32 {form}"], graph_friendly_forms=friendly)
            files["int8 friendly"] = Path(scratch) / f"{name}_int8.onnx"
            to_int8(
                files["fp32 friendly"],
                files["int8 friendly"],
                calibration_images=calibration,
                exclude=default_keep_float(files["fp32 friendly"], model),
                percentile=default_percentile(name),
            )  # as export/to_onnx.py does

            if "main" in args.sections:
                runners = {
                    "PyTorch eager NCHW": torch_runner(model, x),
                    "PyTorch channels_last": torch_runner(model, x, channels_last=True),
                    "onnxruntime fp32": onnx_runner(files["fp32 friendly"], x),
                    "onnxruntime int8": onnx_runner(files["int8 friendly"], x),
                }
                if cuda:  # fp16 is a GPU format: onnxruntime's CPU provider runs most fp16 ops through casts
                    to_fp16(files["fp32 friendly"], Path(scratch) / f"{name}_fp16.onnx")
                    runners["onnxruntime fp16 (CUDA)"] = onnx_runner(Path(scratch) / f"{name}_fp16.onnx", x, cpu=False)
                    runners["onnxruntime fp32 (CUDA)"] = onnx_runner(files["fp32 friendly"], x, cpu=False)
                figures[f"{name} main"] = time_variants(runners, repeats=args.repeats)
                print_table(f"{name} x4, {args.size}x{args.size} input", figures[f"{name} main"], "PyTorch eager NCHW")
                del runners
                gc.collect()

            if "forms" in args.sections:
                einops_int8 = Path(scratch) / f"{name}_einops_int8.onnx"
                to_int8(
                    files["fp32 einops"],
                    einops_int8,
                    calibration_images=calibration,
                    exclude=default_keep_float(files["fp32 einops"], model),
                    percentile=default_percentile(name),
                )
                runners = {
                    "fp32 einops (Reshape/Transpose)": onnx_runner(files["fp32 einops"], x),
                    "fp32 graph-friendly (DepthToSpace, Split/Concat)": onnx_runner(files["fp32 friendly"], x),
                    "int8 einops": onnx_runner(einops_int8, x),
                    "int8 graph-friendly": onnx_runner(files["int8 friendly"], x),
                }
                figures[f"{name} forms"] = time_variants(runners, repeats=args.repeats)
                print_table(
                    f"{name}: exported forms (onnxruntime)", figures[f"{name} forms"], "fp32 einops (Reshape/Transpose)"
                )
                del runners
                gc.collect()

            if "optimization" in args.sections:
                offline = Path(scratch) / f"{name}_offline.onnx"
                create_session(files["fp32 friendly"], device="cpu", optimized_model_path=offline)
                runners = {
                    f"fp32, {level}": onnx_runner(files["fp32 friendly"], x, optimization=level)
                    for level in ("disable", "basic", "extended", "all")
                }
                runners["fp32 offline-optimized (all), loaded with none"] = onnx_runner(
                    offline, x, optimization="disable"
                )
                figures[f"{name} optimization"] = time_variants(runners, repeats=args.repeats)
                print_table(f"{name}: onnxruntime graph optimization", figures[f"{name} optimization"], "fp32, disable")
                del runners
                gc.collect()

    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    key: {
                        name: dict(zip(("median_s", "min_s", "cpu_median_s"), values)) for name, values in table.items()
                    }
                    for key, table in figures.items()
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    with user_errors():  # a bad file or option: one line, exit 1 (sr_models/errors.py)
        main()
