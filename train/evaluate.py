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

import numpy as np
import torch
from tqdm import tqdm

from sr_models.benchmark import is_benchmark_root, load_benchmark, load_benchmark_root
from sr_models.cli import add_device_argument, add_model_arguments, add_overwrite_argument, add_weights_argument
from sr_models.ensemble import self_ensemble
from sr_models.errors import UserError, user_errors
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
from sr_models.metrics import image_metrics, to_uint8
from sr_models.perceptual import DEFAULT_METRICS, DEFAULT_PATCH, format_set_metrics, make_scorer, parse_metrics
from sr_models.resize import upscale_bicubic
from sr_models.weights import WeightsError, load_model


class TorchUpscaler:
    """A PyTorch model as an upscaler of uint8 images. The caller puts the model in eval mode.

    `self_ensemble=True` averages the 8 flipped/rotated runs (sr_models.ensemble) before rounding.
    """

    def __init__(self, model, *, device="cpu", name=None, self_ensemble=False):
        self.model = model
        self.device = torch.device(device)
        self.scale = model.scale
        self.name = name or getattr(model, "spec", {}).get("name", type(model).__name__.lower())
        self.self_ensemble = self_ensemble
        if self_ensemble:
            self.name += " +self-ensemble"

    def run(self, batch):
        """(N, 3, h, w) float32 numpy in [0, 1] -> (N, 3, h*scale, w*scale) float32 numpy, unclamped."""
        parameter = next(self.model.parameters())
        return self.model(torch.from_numpy(batch).to(self.device, parameter.dtype)).float().cpu().numpy()

    @torch.inference_mode()
    def __call__(self, lr):  # (h, w, 3) uint8 -> (h*scale, w*scale, 3) uint8
        x = lr.transpose(2, 0, 1)[None].astype(np.float32) / 255  # (1, 3, h, w)
        sr = self_ensemble(self.run, x) if self.self_ensemble else self.run(x)
        return to_uint8(sr[0].transpose(1, 2, 0))


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
# float64 Y channels and SSIM windows of both (sr_models.metrics): an upper bound, measured loosely.
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


def score(upscaler, samples, *, scale, progress=True, metrics=DEFAULT_METRICS, perceptual=None):
    """Per-image and mean figures of the upscaler and of bicubic upscaling of the same LR.

    PSNR and SSIM are always computed (cheap: the protocol's figures); `metrics` picks the table's columns.
    `perceptual` (a PerceptualScorer) adds LPIPS per image and FID/IS per set ("set" in the report).
    """
    rows = []
    bar = tqdm(samples, desc=f"evaluating {upscaler.name} x{scale}", disable=not progress, leave=False)
    with bar:  # closed (cleared) before an error line is printed, not when the interpreter exits
        for sample in bar:
            try:  # onnxruntime failing on this image, an image too small to score: name the image too
                sr = upscaler(sample.lr)
                if sr.shape != sample.hr.shape:
                    raise UserError(f"model output is {sr.shape}, HR is {sample.hr.shape}")
                bicubic_sr = upscale_bicubic(sample.lr, scale)
                figures = image_metrics(sr, sample.hr, scale=scale)
                bicubic = image_metrics(bicubic_sr, sample.hr, scale=scale)
            except UserError as error:
                raise UserError(f"{sample.source or sample.name}: {error}") from None
            rows.append(
                {
                    "name": sample.name,
                    **figures,
                    "bicubic_psnr_y": bicubic["psnr_y"],
                    "bicubic_ssim_y": bicubic["ssim_y"],
                    "bicubic_psnr_rgb": bicubic["psnr_rgb"],
                    **(perceptual.image(sr, bicubic_sr, sample.hr, crop=scale) if perceptual else {}),
                }
            )
    if not rows:
        raise UserError("no images to evaluate")
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0] if key != "name"}
    report = {"model": upscaler.name, "scale": scale, "metrics": list(metrics), "mean": mean, "images": rows}
    if perceptual:
        report["set"] = perceptual.finish()
    return report


COLUMNS = {  # metric -> its per-image columns, in table order
    "psnr": [("psnr_y", "PSNR_Y"), ("psnr_rgb", "PSNR_RGB"), ("bicubic_psnr_y", "bicubic PSNR_Y")],
    "ssim": [("ssim_y", "SSIM_Y"), ("bicubic_ssim_y", "bicubic SSIM_Y")],
    "lpips": [("lpips", "LPIPS"), ("bicubic_lpips", "bicubic LPIPS")],
}


def format_table(report):
    metrics = report.get("metrics", DEFAULT_METRICS)
    if "psnr" in metrics and "ssim" in metrics:  # the protocol's order, as before --metrics existed
        columns = [
            ("psnr_y", "PSNR_Y"),
            ("ssim_y", "SSIM_Y"),
            ("psnr_rgb", "PSNR_RGB"),
            ("bicubic_psnr_y", "bicubic PSNR_Y"),
            ("bicubic_ssim_y", "bicubic SSIM_Y"),
        ]
    else:
        columns = [column for metric in ("psnr", "ssim") if metric in metrics for column in COLUMNS[metric]]
    columns += COLUMNS["lpips"] if "lpips" in metrics else []
    width = max(8, *(len(row["name"]) for row in report["images"]))
    header = f"{'image':<{width}}" + "".join(f"{title:>16}" for _, title in columns)
    lines = [f"{report['model']} x{report['scale']} (Y = BT.601 luma, border {report['scale']} px)", header]
    for row in [*report["images"], {"name": "mean", **report["mean"]}]:
        lines.append(f"{row['name']:<{width}}" + "".join(f"{row[key]:>16.4f}" for key, _ in columns))
    lines.insert(-1, "-" * len(header))
    return "\n".join(lines + format_set_metrics(report.get("set")))


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
