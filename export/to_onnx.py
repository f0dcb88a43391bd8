"""Export a model to ONNX and prove it equals the PyTorch model on real images before handing it over.

    python export/to_onnx.py --weights run/model.safetensors --output model.onnx
    python export/to_onnx.py --weights ../shared/data/weights/PANx4_DF2K.pth \
        --output pan_x4.onnx [--precision fp16|int8] [--parity-data ../shared/data/Set5]

The model is written under a temporary name beside --output and renamed only once parity passes; on a parity
failure the command exits 1 naming the image and the figure, no .onnx is left, and the figures go to
OUTPUT.parity-failed.json. On success they go to OUTPUT.parity.json. Thresholds: export/parity.py.
int8: the file records the CPU kernel families its check holds for (export/kernels.py); the command prints the
CPU, and says so when int8 is not faster than fp32 on it.
"""

from sr_models.starting import stop_while_starting

if __name__ == "__main__":  # before the imports below (seconds); writer_command's handlers take over in main
    stop_while_starting()

import argparse
import tempfile
from pathlib import Path

import onnx

from export.content import default_calibration
from export.convert import DEFAULT_OPSET, EXPORTERS, check_opset, export_fp32, metadata_props, set_metadata
from export.kernels import FAMILIES_KEY, checked_families, detect_cpu, int8_pays, kernel_family
from export.parity import (
    DEFAULT_MAX_INT8_DROP_DB,
    ParityError,
    check_parity,
    format_report,
    load_parity_images,
)
from export.quantize import default_keep_float, default_percentile, to_fp16, to_int8
from export.runtime import check_model
from sr_models.cli import add_model_arguments, add_overwrite_argument, add_weights_argument
from sr_models.errors import user_errors
from sr_models.files import OutputError, claim_output, interrupted, partial_path, publish, write_report, writer_command
from sr_models.images import list_images, load_rgb
from sr_models.weights import load_model

PRECISIONS = ("fp32", "fp16", "int8")


def build_onnx(
    model,
    path,
    *,
    precision,
    calibration_images=None,
    keep_float=None,
    opset=DEFAULT_OPSET,
    exporter="torchscript",
    graph_friendly_forms=True,
):
    """Write `model` as a validated ONNX file of the given precision at `path` (no parity: see `export`).

    int8: `keep_float` names the Conv nodes that stay float (None: the architecture's,
    export.quantize.default_keep_float); the calibration percentile is the architecture's
    (export.quantize.default_percentile).
    """
    # Hidden and named as ours (sr_models.files): a killed export's scratch folder is removed by the next one.
    scratch_name = partial_path(path, "scratch").name + "-"
    with tempfile.TemporaryDirectory(prefix=scratch_name, dir=Path(path).parent) as scratch:
        fp32 = path if precision == "fp32" else Path(scratch) / "fp32.onnx"
        export_fp32(model, fp32, opset=opset, exporter=exporter, graph_friendly_forms=graph_friendly_forms)
        if precision == "fp16":
            to_fp16(fp32, path)
        elif precision == "int8":
            if keep_float is None:
                keep_float = default_keep_float(fp32, model)
            to_int8(
                fp32,
                path,
                calibration_images=calibration_images,
                exclude=keep_float,
                percentile=default_percentile(model.spec["name"]),
            )
    if precision != "fp32":
        props = metadata_props(model, precision=precision, exporter=exporter, opset=opset)
        if precision == "int8":  # the parity that follows runs this CPU's kernels; what else that proves
            families = checked_families(onnx.load(str(path)), kernel_family(detect_cpu()))
            props[FAMILIES_KEY] = ",".join(families)
        set_metadata(path, props)
    check_model(path)


def write_json(path, data):
    write_report(path, data)


def reports(output):
    """The parity reports written beside an export: they describe the file at `output`."""
    return [output.with_name(output.name + suffix) for suffix in (".parity.json", ".parity-failed.json")]


def export(
    model,
    output,
    *,
    precision="fp32",
    parity_data=None,
    calibration=None,
    keep_float=None,
    parity=True,
    max_int8_drop=DEFAULT_MAX_INT8_DROP_DB,
    opset=DEFAULT_OPSET,
    exporter="torchscript",
    graph_friendly_forms=True,
    progress=True,
):
    """Export, check parity, and only then put the model at `output`. Returns the parity report (None if skipped).

    Raises ParityError (after writing OUTPUT.parity-failed.json), ExportError, OnnxModelError or ValueError.
    """
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    parity_images = load_parity_images(parity_data, scale=model.scale) if parity else None
    calibration_images = None
    if precision == "int8":  # --calibration images are model inputs; by default LR of built-in photos and graphics
        calibration_images = (
            [load_rgb(path) for path in list_images(calibration)]
            if calibration
            else default_calibration(scale=model.scale)
        )
    # A hidden temporary name in the same folder, not ending in .onnx: never mistaken for a model, and
    # renamed atomically once parity has passed.
    partial = partial_path(output)
    try:
        build_onnx(
            model,
            partial,
            precision=precision,
            calibration_images=calibration_images,
            keep_float=keep_float,
            opset=opset,
            exporter=exporter,
            graph_friendly_forms=graph_friendly_forms,
        )
        report = None
        if parity:
            report = check_parity(
                model, partial, parity_images, precision=precision, max_int8_drop=max_int8_drop, progress=progress
            )
            report["onnx"] = output.name
            if not report["passed"]:
                write_json(output.with_name(output.name + ".parity-failed.json"), report)
                raise ParityError(f"{output}: parity failed, model not written:\n  " + "\n  ".join(report["failures"]))
        publish(partial, output)
        # Reports beside the file describe this file: stale ones from an earlier export at this path go.
        output.with_name(output.name + ".parity-failed.json").unlink(missing_ok=True)
        output.with_name(output.name + ".parity.json").unlink(missing_ok=True)
        if report is not None:
            write_json(output.with_name(output.name + ".parity.json"), report)
        return report
    except OSError as error:  # a full disk or an unwritable folder while exporting: named, nothing left behind
        raise OutputError(f"{output}: cannot write ({' '.join(str(error).split())})") from None
    finally:
        partial.unlink(missing_ok=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(parser, help="our .safetensors, or a PAN/SRResNet .pth")
    parser.add_argument("--output", required=True, type=Path, help="the .onnx file to write")
    add_overwrite_argument(parser, help="replace --output if it already exists")
    add_model_arguments(parser)
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="fp32",
        help="fp32 | fp16 (GPU format, float32 in and out) | int8 (static QDQ, PSNR_Y drop checked)",
    )
    parser.add_argument(
        "--calibration",
        type=Path,
        help="folder of images fed as model inputs to calibrate int8 "
        "(default: LR of built-in photos and text/graphics, export/content.py)",
    )
    parser.add_argument(
        "--keep-float",
        nargs="+",
        metavar="CONV",
        help="int8: Conv node names to keep float, or 'none' (default: the model's most sensitive "
        "convs, the architecture's int8_float_modules; rank them with export/sensitivity.py)",
    )
    parser.add_argument(
        "--parity-data",
        type=Path,
        help="benchmark folder (HR/ + LR_bicubic/X<scale>/) or folder of photos taken as HR "
        "(default: the built-in photos of the training data set)",
    )
    parser.add_argument("--no-parity", action="store_true", help="skip the parity check (not for deployment)")
    parser.add_argument(
        "--max-int8-drop",
        type=float,
        default=DEFAULT_MAX_INT8_DROP_DB,
        help="largest PSNR_Y drop (dB) of int8 below fp32 PyTorch on any image (default 0.3)",
    )
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset, >= 17 (default {DEFAULT_OPSET})")
    parser.add_argument(
        "--exporter",
        choices=EXPORTERS,
        default="torchscript",
        help="torch.onnx exporter (default torchscript; dynamo needs onnxscript)",
    )
    parser.add_argument(
        "--einops-graph",
        action="store_true",
        help="export the model as traced: einops reshapes as Reshape/Transpose instead of "
        "DepthToSpace and Split/Concat, SRResNet's tail conv after its last pixel shuffle "
        "(slower in onnxruntime, see docs/performance.md)",
    )
    args = parser.parse_args(argv)
    if args.output.suffix.lower() != ".onnx":
        parser.error(f"--output {args.output}: the file name must end in .onnx")
    if args.keep_float is not None and args.precision != "int8":
        parser.error("--keep-float is an int8 choice: add --precision int8")
    if args.keep_float == ["none"]:
        args.keep_float = []
    if args.precision == "int8" and args.no_parity:
        parser.error("--precision int8 cannot skip parity: its PSNR_Y drop is what makes it acceptable")
    return args


@writer_command
def main(argv=None):
    with user_errors():  # WeightsError, ImageError, ParityError, ExportError, OnnxModelError, ...: one line, exit 1
        export_command(parse_args(argv))


def export_command(args):
    try:
        check_opset(args.opset, args.exporter)  # before the weights are read: a wrong number costs nothing
        inputs = [p for p in (args.weights, args.parity_data, args.calibration) if p is not None]
        claim_output(args.output, inputs=inputs, overwrite=args.overwrite, writes="onnx")
        for report_path in reports(args.output):  # stale reports of ours are replaced; a user's file never
            claim_output(report_path, inputs=inputs, overwrite=True, lock=False, writes="report")
        model = load_model(args.weights, name=args.model, scale=args.scale)
        report = export(
            model,
            args.output,
            precision=args.precision,
            parity_data=args.parity_data,
            calibration=args.calibration,
            keep_float=args.keep_float,
            parity=not args.no_parity,
            max_int8_drop=args.max_int8_drop,
            opset=args.opset,
            exporter=args.exporter,
            graph_friendly_forms=not args.einops_graph,
        )
    except KeyboardInterrupt:  # the model is renamed into place only after parity: nothing half-written is left
        interrupted(f"{args.output} not written")
    if report is not None:
        print(format_report(report))
        drop = f", largest PSNR_Y drop {report['max_psnr_y_drop_db']:.3f} dB" if args.precision == "int8" else ""
        print(f"parity passed: min {report['min_parity_psnr_db']:.2f} dB{drop} -> {args.output}.parity.json")
    else:
        print("parity NOT checked (--no-parity)")
    print(f"wrote {args.output} ({args.precision}, x{model.scale} {model.spec['name']})")
    if args.precision == "int8":
        print_int8_verdict(args.output)


def print_int8_verdict(path):
    """The CPU the figures belong to, the kernel families the file was checked for, and where int8 does not pay."""
    cpu = detect_cpu()
    families = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    print(
        f"{cpu.describe()}; int8 kernel family {kernel_family(cpu)}; file checked for: "
        f"{families.get(FAMILIES_KEY) or 'none'}"
    )
    if not int8_pays(cpu):
        print(
            f"int8 is not expected to be faster than fp32 on {cpu.model} (no VNNI/AMX; PAN x4 measured 0.94-0.99x "
            "of fp32 on an AVX2-only AMD EPYC, docs/int8.md); export fp32 for it, int8 for CPUs with VNNI or AMX"
        )


if __name__ == "__main__":
    main()
