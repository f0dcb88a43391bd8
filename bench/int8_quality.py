"""int8 by content kind: PSNR_Y drop below fp32 on held-out photos and text/graphics, and speed, per choice tried.

    python bench/int8_quality.py                                   # PAN x4, the authors' weights (../shared)
    python bench/int8_quality.py --srresnet RUN/model.safetensors  # and a trained SRResNet x4
    python bench/int8_quality.py --scan-json pan_scan.json         # keep (or reuse) the sensitivity scan

For each choice (calibration images and method, percentile, convs kept float, the new steps of export/quantize.py)
the fp32 export is quantized, then:
    photos    worst and mean PSNR_Y drop (dB) of int8 below fp32 on Set5 (official LR) and `clock_motion.png`
    graphics  the same on drawn slides, screenshots, line art, charts and cartoons (bench/held_out.py)
    speed-up  onnxruntime fp32 median time / int8 median time, one 256x256 -> x4 call, variants interleaved
    smooth    (--smooth) the same on smooth images (bench/smooth_images.py: smooth synthetic photos, ramps, Set5
              crops of smooth regions); also the worst image among those where fp32 is at most SMOOTH_CEILING_DB
None of these images calibrates or checks parity (export/content.py, tests/test_int8.py). The drop is taken
against the fp32 ONNX model, which equals PyTorch within 1e-6 (fp32 parity).

The sensitivity scan (export/sensitivity.py: one quantization per conv, on crops of the calibration images) ranks
the convs; "N most sensitive float" keeps the first N of that ranking in float. It takes minutes for PAN.
"""

import argparse
import gc
import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `python bench/int8_quality.py` imports bench.*

import bench.onnx_speed  # noqa: E402
from bench.held_out import held_out_photos, synthetic_graphics  # noqa: E402
from bench.onnx_speed import PAN_WEIGHTS, onnx_runner, time_variants  # noqa: E402
from bench.smooth_images import smooth_images  # noqa: E402
from export.content import builtin_images, default_calibration  # noqa: E402
from export.convert import export_fp32  # noqa: E402
from export.kernels import detect_cpu, kernel_family  # noqa: E402
from export.parity import DEFAULT_MAX_INT8_DROP_DB, photos_as_pairs  # noqa: E402
from export.quantize import PERCENTILE, default_keep_float, default_percentile, to_int8  # noqa: E402
from export.runtime import OnnxUpscaler  # noqa: E402
from export.sensitivity import center_crops, conv_sensitivity, int8_drops, psnr_y  # noqa: E402
from sr_models.errors import user_errors  # noqa: E402
from sr_models.weights import load_model  # noqa: E402


@dataclass(frozen=True)
class Choice:
    """One way to build the int8 file. keep: "none", "previous" (PREVIOUS_KEEP_FLOAT), "default" (what
    export/to_onnx.py keeps: export.quantize.KEEP_FLOAT) or N (the N most sensitive convs of the scan).
    percentile: a number, or "default" (export.quantize.default_percentile of the model). new_steps: channel
    equalization, the exact input levels and float skips (export/quantize.py), all on or all off. weights: plain
    8-bit, 7-bit, or "paired" (8-bit with a coarser scale for the channels whose same-sign weight pairs could
    saturate onnxruntime's AVX2 kernels: export/kernels.py)."""

    images: str  # "photos" (the training photos) or "mix" (export/content.py: photos and text/graphics)
    method: str
    percentile: float | str
    keep: str | int
    new_steps: bool
    weights: str = "8bit"  # export.quantize.WEIGHTS; "paired" is the export default


# The float convs of the export before channel equalization (four for PAN, three for SRResNet; docs/int8.md).
PREVIOUS_KEEP_FLOAT = {
    "pan": (
        "/upsample.1/refine/Conv",
        "/tail/Conv",
        "/trunk/trunk.0/attention_branch/conv/Conv",
        "/trunk/trunk.0/split/Conv",
    ),
    "srresnet": ("/trunk/trunk.16/Conv", "/upsample/upsample.0/upsample.0.0/Conv", "/trunk/trunk.15/body/body.0/Conv"),
}

# The first rows are the exports before docs/int8.md's last two rounds; then one step at a time to today's default.
CHOICES = {
    "photos, percentile 99.999 (first export)": Choice("photos", "percentile", 99.999, "none", False),
    "photos+graphics, minmax": Choice("mix", "minmax", None, "none", False),
    "photos+graphics, percentile 99.999": Choice("mix", "percentile", 99.999, "none", False),
    "previous default: photos+graphics, 99.999, previous float convs": Choice(
        "mix", "percentile", 99.999, "previous", False
    ),
    "+ exact input levels, float skips, channel equalization": Choice("mix", "percentile", 99.999, "previous", True),
    "+ the model's percentile": Choice("mix", "percentile", "default", "previous", True),
    "+ the model's float convs (8-bit weights)": Choice("mix", "percentile", "default", "default", True),
    "+ weights no kernel family saturates (export default)": Choice(
        "mix", "percentile", "default", "default", True, "paired"
    ),
    "export default with 7-bit weights": Choice("mix", "percentile", "default", "default", True, "7bit"),
    "export default without the new steps": Choice("mix", "percentile", "default", "default", False),
    "photos+graphics, percentile 99.999, 4 most sensitive float (needs the scan)": Choice(
        "mix", "percentile", 99.999, 4, False
    ),
}
DEFAULT_CHOICES = [name for name, choice in CHOICES.items() if not isinstance(choice.keep, int)]
# Above about 50 dB fp32 PSNR_Y a smooth image's fp32 error is under 0.8 grey levels RMS, below the noise floor that
# int8 activations add on smooth content (about 0.2 levels RMS of Y on PAN x4; docs/int8.md, "Smooth content").
SMOOTH_CEILING_DB = 50.0


def float_convs_of(choice, fp32, model, ranking):
    name = model.spec["name"]
    if choice.keep == "default":
        return default_keep_float(fp32, model)
    if choice.keep == "previous":
        convs = [node.name for node in onnx.load(str(fp32)).graph.node if node.op_type == "Conv"]
        return [[conv for conv in convs if conv.endswith(suffix)][-1] for suffix in PREVIOUS_KEEP_FLOAT[name]]
    return ranking[: choice.keep] if isinstance(choice.keep, int) else []


def sensitivity_ranking(fp32, *, scale, scan_json=None):
    """Convs ranked by export/sensitivity.py on the calibration images (read from `scan_json` when it exists)."""
    if scan_json and Path(scan_json).is_file():
        return json.loads(Path(scan_json).read_text())
    pairs = photos_as_pairs(
        builtin_images("calibration", "photo") + builtin_images("calibration", "graphics"), scale=scale
    )
    scan = conv_sensitivity(fp32, center_crops(pairs, scale=scale), calibration_images=[p.lr for p in pairs])
    if scan_json:
        Path(scan_json).write_text(json.dumps(scan, indent=1) + "\n")
    return scan


def bench_model(name, model, *, choices, repeats, size, scan_json, scratch, graphics_seeds, smooth=()):
    scale = model.scale
    fp32 = Path(scratch) / f"{name}_fp32.onnx"
    export_fp32(model, fp32)
    sets = {"photos": held_out_photos(scale=scale), "graphics": synthetic_graphics(scale=scale, seeds=graphics_seeds)}
    for which in smooth:  # "tuning" and/or "aside" (bench/smooth_images.py)
        sets[f"smooth {which}"] = smooth_images(scale=scale, aside=which == "aside")
    reference = OnnxUpscaler(fp32, device="cpu", tile=None)
    fp32_scores = {kind: psnr_y(reference, images) for kind, images in sets.items()}
    calibration = {
        "photos": [p.lr for p in photos_as_pairs(builtin_images("calibration", "photo"), scale=scale)],
        "mix": default_calibration(scale=scale),
    }
    ranking = None
    if any(isinstance(choice.keep, int) for choice in choices.values()):
        ranking = [row["name"] for row in sensitivity_ranking(fp32, scale=scale, scan_json=scan_json)["convs"]]
        print(f"{name}: most sensitive convs (mean PSNR_Y gain when float): {ranking[:4]}")

    rows, files = {}, {}
    for choice, how in choices.items():
        files[choice] = Path(scratch) / f"{name}_{len(files)}.onnx"
        exclude = float_convs_of(how, fp32, model, ranking)
        percentile = default_percentile(name) if how.percentile == "default" else how.percentile or PERCENTILE
        to_int8(
            fp32,
            files[choice],
            calibration_images=calibration[how.images],
            method=how.method,
            exclude=exclude,
            percentile=percentile,
            equalize_channels=how.new_steps,
            exact_input=how.new_steps,
            float_skips=how.new_steps,
            weights=how.weights,
        )
        rows[choice] = {"float convs": exclude, "percentile": percentile, "weights": how.weights}
        for kind, images_of_kind in sets.items():
            drops = int8_drops(fp32_scores[kind], files[choice], images_of_kind)
            worst = int(np.argmax(drops))
            rows[choice][kind] = {
                "worst": float(drops[worst]),
                "worst image": images_of_kind[worst].name,
                "mean": float(drops.mean()),
                "images": len(drops),
                "over budget": int((drops > DEFAULT_MAX_INT8_DROP_DB).sum()),
            }
            if kind.startswith("smooth"):
                below = fp32_scores[kind] <= SMOOTH_CEILING_DB
                if below.any():
                    index = int(np.flatnonzero(below)[np.argmax(drops[below])])
                    rows[choice][kind] |= {
                        "worst below ceiling": float(drops[index]),
                        "worst image below ceiling": images_of_kind[index].name,
                    }

    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    runners = {"fp32": onnx_runner(fp32, x)} | {choice: onnx_runner(path, x) for choice, path in files.items()}
    times = time_variants(runners, repeats=repeats)
    del runners
    gc.collect()
    print(
        f"\n{name} x{scale}: int8 PSNR_Y drop below fp32 (dB), held-out images, as computed by this CPU's "
        f"kernels; speed {size}x{size} -> x{scale}, onnxruntime fp32 median {times['fp32'][0] * 1000:.0f} ms; "
        f"{detect_cpu().describe()}, int8 kernel family {kernel_family(detect_cpu())}"
    )
    # CPU time too: on a machine shared with other jobs, wall time swings by tens of percent between variants.
    print(
        f"| choice | photos worst | photos mean | graphics worst | graphics mean | over {DEFAULT_MAX_INT8_DROP_DB} dB "
        "| int8 ms | speed-up | CPU speed-up |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for choice, row in rows.items():
        row["int8 median s"], row["speed-up"] = times[choice][0], times["fp32"][0] / times[choice][0]
        row["cpu speed-up"] = times["fp32"][2] / times[choice][2]
        p, g = row["photos"], row["graphics"]
        print(
            f"| {choice} | {p['worst']:.3f} ({p['worst image']}) | {p['mean']:.3f} | {g['worst']:.3f} "
            f"({g['worst image']}) | {g['mean']:.3f} | {p['over budget']}/{p['images']} photos, "
            f"{g['over budget']}/{g['images']} graphics | {times[choice][0] * 1000:.0f} | {row['speed-up']:.2f}x | "
            f"{row['cpu speed-up']:.2f}x |"
        )
    for kind in (kind for kind in sets if kind.startswith("smooth")):
        print(f"\n{name} x{scale}, {kind} ({len(sets[kind])} images): int8 PSNR_Y drop below fp32 (dB)")
        print(
            f"| choice | worst | mean | over {DEFAULT_MAX_INT8_DROP_DB} dB "
            f"| worst where fp32 <= {SMOOTH_CEILING_DB:.0f} dB |"
        )
        print("|---|---:|---:|---:|---:|")
        for choice, row in rows.items():
            fig = row[kind]
            below = (
                f"{fig['worst below ceiling']:.3f} ({fig['worst image below ceiling']})"
                if "worst below ceiling" in fig
                else "none below"
            )
            print(
                f"| {choice} | {fig['worst']:.3f} ({fig['worst image']}) | {fig['mean']:.3f} | "
                f"{fig['over budget']}/{fig['images']} | {below} |"
            )
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--srresnet", type=Path, help="trained SRResNet x4 weights (.safetensors) to bench as well")
    parser.add_argument(
        "--choices",
        nargs="+",
        choices=list(CHOICES),
        default=DEFAULT_CHOICES,
        metavar="CHOICE",
        help="which choices to run (default: all but the one that needs the sensitivity scan)",
    )
    parser.add_argument(
        "--graphics-seeds",
        nargs="+",
        type=int,
        default=[0, 1],
        help="seeds of the drawn text/graphics images (default 0 1; tests use 7)",
    )
    parser.add_argument(
        "--smooth",
        nargs="+",
        choices=("tuning", "aside"),
        default=[],
        help="also score the smooth images of bench/smooth_images.py (tuning, aside or both)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (default 5)")
    parser.add_argument("--size", type=int, default=256, help="timed input height and width (default 256)")
    parser.add_argument(
        "--scan-json",
        nargs="+",
        type=Path,
        default=[],
        help="one file per model benched, in order (PAN, SRResNet): reuse its sensitivity scan, or write it",
    )
    parser.add_argument("--threads", type=int, help="onnxruntime intra-op threads (default: one per core)")
    parser.add_argument("--no-pan", action="store_true", help="only the --srresnet model")
    parser.add_argument("--json", type=Path, help="write all figures here")
    args = parser.parse_args(argv)
    bench.onnx_speed.THREADS = args.threads
    if not PAN_WEIGHTS.is_file():
        raise SystemExit(f"error: {PAN_WEIGHTS}: the PAN authors' x4 weights are needed (../shared is absent)")
    models = {} if args.no_pan else {"pan": load_model(PAN_WEIGHTS, name="pan", scale=4)}
    if args.srresnet:
        models["srresnet"] = load_model(args.srresnet)
    choices = {name: CHOICES[name] for name in args.choices}
    figures = {}
    with tempfile.TemporaryDirectory(prefix="sr-int8-bench-") as scratch, torch.no_grad():
        for index, (name, model) in enumerate(models.items()):
            scan_json = args.scan_json[index] if index < len(args.scan_json) else None
            figures[name] = bench_model(
                name,
                model.eval(),
                choices=choices,
                repeats=args.repeats,
                size=args.size,
                scan_json=scan_json,
                scratch=scratch,
                graphics_seeds=tuple(args.graphics_seeds),
                smooth=args.smooth,
            )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    with user_errors():  # a bad file or option: one line, exit 1 (sr_models/errors.py)
        main()
