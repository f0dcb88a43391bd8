"""Score a super-resolution model on a benchmark folder with the protocol of the published numbers.

    python train/evaluate.py --weights run/model.safetensors --hr ../shared/data/Set5/HR \
        --lr ../shared/data/Set5/LR_bicubic/X4
    python train/evaluate.py --weights PANx4_DF2K.pth --hr ../shared/data/Set5 [--json report.json]
    python train/evaluate.py --weights pan_x4.onnx --hr ...
    python train/evaluate.py ... --metrics psnr,ssim,lpips,fid,is [--metrics-weights DIR] [--self-ensemble]

--hr takes an HR folder or a benchmark root (HR/ + LR_bicubic/X<scale>/, whose LR is then used). A foreign PAN or
SRResNet checkpoint is recognised from its tensors; PAN x2 and x3 files need --scale (their tensors are identical).

Protocol (docs/evaluation.md): uint8 RGB in, HR mod-cropped to scale x LR, output clamped and rounded
to uint8, PSNR/SSIM on the unrounded BT.601 Y channel with `scale` pixels cut from each border. Without --lr the
LR images are made from HR with the MATLAB-compatible bicubic. Bicubic upscaling of the same LR is the baseline.
LPIPS (per image), FID and IS (per set, over HR patches) and self-ensemble: docs/metrics.md.
"""

from sr_models.starting import stop_while_starting

if __name__ == "__main__":  # before the imports below (seconds); writer_command's handlers take over in main
    stop_while_starting()

import argparse
from pathlib import Path

import torch

from sr_models.cli import add_device_argument, add_model_arguments, add_overwrite_argument, add_weights_argument
from sr_models.errors import UserError, user_errors
from sr_models.evaluation.perceptual import DEFAULT_METRICS, DEFAULT_PATCH, make_scorer, parse_metrics
from sr_models.evaluation.samples import is_benchmark_root, load_benchmark, load_benchmark_root
from sr_models.evaluation.scoring import COLUMNS, TorchUpscaler, format_table, score  # noqa: F401 (COLUMNS: an old public name)
from sr_models.files import claim_output, interrupted, write_report, writer_command
from sr_models.image_memory import (
    ACTIVATION_BYTES_PER_OUTPUT_PIXEL,
    DEFAULT_MAX_MEMORY,
    check_fits,
    gib,
    memory_limit,
    parse_memory,
)
from sr_models.images import list_images, read_header
from sr_models.weights import WeightsError, load_model


def resolve_device(device):
    """A PyTorch device from --device (auto, cpu, cuda, cuda:N), or one line saying why it cannot be used."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError):
        raise UserError(f"--device {device!r}: not a device; use auto, cpu, cuda or cuda:N") from None
    if parsed.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device!r}: only cpu and cuda devices are supported")
    if parsed.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserError(f"--device {device!r}: no CUDA GPU is visible to PyTorch on this machine; use cpu or auto")
        if parsed.index is not None and parsed.index >= count:
            raise UserError(f"--device {device!r}: this machine has {count} CUDA GPU(s) (cuda:0..cuda:{count - 1})")
    return device


def load_upscaler(weights, *, model=None, scale=None, device="cpu", self_ensemble=False, max_memory=None):
    """An upscaler from a weights file: our safetensors, a foreign `.pth` (with model and scale), or ONNX (whose
    runs on the CPU fail past `max_memory`'s limit: OnnxUpscaler's memory_limit)."""
    weights = Path(weights)
    if weights.suffix.lower() == ".onnx":
        from export.runtime import OnnxUpscaler  # deferred: only ONNX evaluation needs onnxruntime

        upscaler = OnnxUpscaler(
            weights,
            device=device,
            self_ensemble=self_ensemble,
            memory_limit=memory_limit(max_memory)[0] if max_memory else None,
        )
        if scale is not None and scale != upscaler.scale:
            raise WeightsError(f"{weights}: the ONNX model is x{upscaler.scale}, but --scale {scale} was given")
        return upscaler
    net = load_model(weights, name=model, scale=scale).to(device).eval()
    if scale is not None and scale != net.scale:
        raise WeightsError(f"{weights}: the model is x{net.scale}, but --scale {scale} was given")
    return TorchUpscaler(net, device=device, self_ensemble=self_ensemble)


# Scoring one image, per output pixel: the float32 model output, its uint8 rounding, the bicubic baseline and the
# float64 Y channels and SSIM windows of both (sr_models.evaluation.metrics): an upper bound, measured loosely.
SCORING_BYTES_PER_OUTPUT_PIXEL = 160


def check_evaluation_memory(upscaler, hr, *, max_memory=None):
    """Refuse, from the HR files' headers and before anything is decoded, a set whose largest image would not
    fit: the set's images (HR and LR), the model's activations (on the whole image for PyTorch models, on tiles
    for ONNX ones), the outputs and the metrics."""
    folder = Path(hr, "HR") if is_benchmark_root(hr) else Path(hr)
    headers = [read_header(path, name=str(path), max_memory=max_memory) for path in list_images(folder)]
    s = upscaler.scale
    held = sum(h.width * h.height * 3 * (1 + 1 / s**2) for h in headers)
    largest = max(headers, key=lambda h: h.width * h.height)
    width, height = largest.width, largest.height
    tile = getattr(upscaler, "tile", None)
    if tile:  # OnnxUpscaler: the model runs on tiles of `tile` LR pixels plus their context
        side_h, side_w = (min(tile + 2 * upscaler.tile_pad, n // s) * s for n in (height, width))
        run, where = side_h * side_w * ACTIVATION_BYTES_PER_OUTPUT_PIXEL, f"tiles of {tile}"
        known, op = upscaler.graph_memory(side_h // s, side_w // s)  # a graph known to allocate more (export.runtime)
        if known > run:
            run, where = known, f"tiles of {tile} (its graph's {op} output alone)"
    else:
        run, where = width * height * ACTIVATION_BYTES_PER_OUTPUT_PIXEL, "the whole image"
    scoring = width * height * SCORING_BYTES_PER_OUTPUT_PIXEL
    check_fits(
        int(held) + run + scoring,
        name=largest.name,
        max_memory=max_memory,
        what=f"evaluating this {width}x{height} image (the set's images {gib(held)}, the model on {where} "
        f"{gib(run)}, outputs and metrics {gib(scoring)})",
        change="pass a larger --max-memory if the machine has it, evaluate an ONNX export (tiled), or "
        "use smaller images",
    )


def metrics_argument(text):
    try:
        return parse_metrics(text)
    except ValueError as error:  # argparse prints this message, not "invalid value"
        raise argparse.ArgumentTypeError(str(error)) from None


def benchmark_samples(hr, *, scale, lr_dir=None, max_memory=None):
    """--hr as an HR folder (LR from --lr or bicubic) or a benchmark root (its LR_bicubic/X<scale>/ if present)."""
    if lr_dir is None and is_benchmark_root(hr):
        return load_benchmark_root(hr, scale=scale, max_memory=max_memory)
    return load_benchmark(hr, scale=scale, lr_dir=lr_dir, max_memory=max_memory)


def memory_argument(text):
    try:
        return parse_memory(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_weights_argument(parser, help=".safetensors (ours), a PAN/SRResNet .pth, .onnx")
    parser.add_argument(
        "--hr", required=True, type=Path, help="folder of HR images, or a benchmark root (HR/ + LR_bicubic/X<scale>/)"
    )
    parser.add_argument("--lr", type=Path, help="folder of LR images matched by stem (default: MATLAB bicubic of HR)")
    add_model_arguments(parser)
    parser.add_argument("--json", type=Path, help="write the report here")
    add_overwrite_argument(parser, help="replace --json if it already exists")
    add_device_argument(parser, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    parser.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x the time)")
    parser.add_argument(
        "--metrics",
        type=metrics_argument,
        default=DEFAULT_METRICS,
        help="comma-separated: psnr,ssim,lpips,fid,is (default psnr,ssim; docs/metrics.md)",
    )
    parser.add_argument(
        "--metrics-weights",
        type=Path,
        help="folder of the LPIPS/Inception weight files (default: $SR_METRICS_WEIGHTS, then torch's hub cache)",
    )
    parser.add_argument(
        "--max-memory",
        type=memory_argument,
        default=DEFAULT_MAX_MEMORY,
        help="memory evaluation may take, e.g. 8G (default 4G; never more than MemAvailable)",
    )
    parser.add_argument(
        "--fid-patch",
        type=int,
        default=DEFAULT_PATCH,
        help=f"FID/IS: non-overlapping patches of this many HR pixels (default {DEFAULT_PATCH})",
    )
    return parser.parse_args(argv)


@writer_command
def main(argv=None):
    with user_errors():  # ImageError, WeightsError, OnnxModelError, OutputError, bad options: one line, exit 1
        score_command(parse_args(argv))


def score_command(args):
    try:
        if args.json:  # claimed before minutes of scoring, not after
            inputs = [p for p in (args.weights, args.hr, args.lr, args.metrics_weights) if p is not None]
            claim_output(args.json, inputs=inputs, overwrite=args.overwrite, writes="report")
        # onnxruntime chooses its own provider for "auto"; PyTorch needs a device it has.
        torch_device = resolve_device(args.device)
        device = args.device if args.weights.suffix.lower() == ".onnx" else torch_device
        upscaler = load_upscaler(
            args.weights,
            model=args.model,
            scale=args.scale,
            device=device,
            self_ensemble=args.self_ensemble,
            max_memory=args.max_memory,
        )
        check_evaluation_memory(upscaler, args.hr, max_memory=args.max_memory)
        samples = benchmark_samples(args.hr, scale=upscaler.scale, lr_dir=args.lr, max_memory=args.max_memory)
        perceptual = make_scorer(
            args.metrics, device=torch_device, weights_dir=args.metrics_weights, patch=args.fid_patch
        )
        report = score(upscaler, samples, scale=upscaler.scale, metrics=args.metrics, perceptual=perceptual)
    except KeyboardInterrupt:
        interrupted("nothing written")
    print(format_table(report))
    if args.json:
        write_report(args.json, report)


if __name__ == "__main__":
    main()
