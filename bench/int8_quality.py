"""int8 by content kind: PSNR_Y drop below fp32 on held-out photos and text/graphics, and speed, per choice tried.

    python bench/int8_quality.py                                   # PAN x4, the authors' weights (../shared)
    python bench/int8_quality.py --srresnet RUN/model.safetensors  # and a trained SRResNet x4
    python bench/int8_quality.py --scan-json pan_scan.json         # keep (or reuse) the sensitivity scan

For each choice (calibration set, calibration method, convs kept float) the fp32 export is quantized, then:
    photos    worst and mean PSNR_Y drop (dB) of int8 below fp32 on Set5 (official LR) and `clock_motion.png`
    graphics  the same on drawn slides, screenshots, line art, charts and cartoons (bench/held_out.py)
    speed-up  onnxruntime fp32 median time / int8 median time, one 256x256 -> x4 call, variants interleaved
None of these images calibrates or checks parity (export/content.py, tests/test_int8.py). The drop is taken
against the fp32 ONNX model, which equals PyTorch within 1e-6 (fp32 parity).

The sensitivity scan (export/sensitivity.py: one quantization per conv, on crops of the calibration images) ranks
the convs; "N most sensitive float" keeps the first N of that ranking in float. It takes minutes for PAN.
"""

import argparse
import gc
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

import bench.onnx_speed
from bench.held_out import held_out_photos, synthetic_graphics
from bench.onnx_speed import PAN_WEIGHTS, onnx_runner, time_variants
from export.content import builtin_images, default_calibration
from export.convert import export_fp32
from export.parity import photos_as_pairs
from export.quantize import PERCENTILE, default_keep_float, to_int8
from export.runtime import OnnxUpscaler
from export.sensitivity import center_crops, conv_sensitivity, int8_drops, psnr_y
from sr_models.weights import load_model

# name: (calibration images, calibration method, percentile, convs kept float: the N most sensitive of the scan, or
# "default": export.quantize.KEEP_FLOAT, what export/to_onnx.py does). The first row is the export before this page.
CHOICES = {
    "photos, percentile (before)": ("photos", "percentile", 99.999, 0),
    "photos+graphics, minmax": ("mix", "minmax", None, 0),
    "photos+graphics, percentile": ("mix", "percentile", 99.999, 0),
    "photos+graphics, percentile, export default float convs": ("mix", "percentile", 99.999, "default"),
    "photos+graphics, percentile 99.9999, 2 most sensitive float": ("mix", "percentile", 99.9999, 2),
    "photos+graphics, percentile, 4 most sensitive float": ("mix", "percentile", 99.999, 4),
}


def sensitivity_ranking(fp32, *, scale, scan_json=None):
    """Convs ranked by export/sensitivity.py on the calibration images (read from `scan_json` when it exists)."""
    if scan_json and Path(scan_json).is_file():
        return json.loads(Path(scan_json).read_text())
    pairs = photos_as_pairs(builtin_images("calibration", "photo") + builtin_images("calibration", "graphics"),
                            scale=scale)  # fmt: skip
    scan = conv_sensitivity(fp32, center_crops(pairs, scale=scale), calibration_images=[p.lr for p in pairs])
    if scan_json:
        Path(scan_json).write_text(json.dumps(scan, indent=1) + "\n")
    return scan


def bench_model(name, model, *, choices, repeats, size, scan_json, scratch):
    scale = model.scale
    fp32 = Path(scratch) / f"{name}_fp32.onnx"
    export_fp32(model, fp32)
    sets = {"photos": held_out_photos(scale=scale), "graphics": synthetic_graphics(scale=scale)}
    reference = OnnxUpscaler(fp32, device="cpu", tile=None)
    fp32_scores = {kind: psnr_y(reference, images) for kind, images in sets.items()}
    calibration = {"photos": [p.lr for p in photos_as_pairs(builtin_images("calibration", "photo"), scale=scale)],
                   "mix": default_calibration(scale=scale)}  # fmt: skip
    ranking = None
    if any(isinstance(keep, int) and keep for *_, keep in choices.values()):
        ranking = [row["name"] for row in sensitivity_ranking(fp32, scale=scale, scan_json=scan_json)["convs"]]
        print(f"{name}: most sensitive convs (mean PSNR_Y gain when float): {ranking[:4]}")

    rows, files = {}, {}
    for choice, (images, method, percentile, keep) in choices.items():
        files[choice] = Path(scratch) / f"{name}_{len(files)}.onnx"
        exclude = default_keep_float(fp32, name) if keep == "default" else ranking[:keep] if keep else []
        to_int8(fp32, files[choice], calibration_images=calibration[images], method=method, exclude=exclude,
                percentile=percentile or PERCENTILE)  # fmt: skip
        rows[choice] = {"float convs": exclude}
        for kind, images_of_kind in sets.items():
            drops = int8_drops(fp32_scores[kind], files[choice], images_of_kind)
            worst = int(np.argmax(drops))
            rows[choice][kind] = {"worst": float(drops[worst]), "worst image": images_of_kind[worst].name,
                                  "mean": float(drops.mean())}  # fmt: skip

    x = np.random.default_rng(0).random((1, 3, size, size), dtype=np.float32)
    runners = {"fp32": onnx_runner(fp32, x)} | {choice: onnx_runner(path, x) for choice, path in files.items()}
    times = time_variants(runners, repeats=repeats)
    del runners
    gc.collect()
    print(f"\n{name} x{scale}: int8 PSNR_Y drop below fp32 (dB), held-out images; speed {size}x{size} -> "
          f"x{scale}, onnxruntime fp32 median {times['fp32'][0] * 1000:.0f} ms")  # fmt: skip
    # CPU time too: on a machine shared with other jobs, wall time swings by tens of percent between variants.
    print("| choice | photos worst | photos mean | graphics worst | graphics mean | int8 ms | speed-up "
          "| CPU speed-up |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for choice, row in rows.items():
        row["int8 median s"], row["speed-up"] = times[choice][0], times["fp32"][0] / times[choice][0]
        row["cpu speed-up"] = times["fp32"][2] / times[choice][2]
        p, g = row["photos"], row["graphics"]
        print(f"| {choice} | {p['worst']:.3f} ({p['worst image']}) | {p['mean']:.3f} | {g['worst']:.3f} "
              f"({g['worst image']}) | {g['mean']:.3f} | {times[choice][0] * 1000:.0f} | {row['speed-up']:.2f}x | "
              f"{row['cpu speed-up']:.2f}x |")  # fmt: skip
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--srresnet", type=Path, help="trained SRResNet x4 weights (.safetensors) to bench as well")
    parser.add_argument("--choices", nargs="+", choices=list(CHOICES), default=list(CHOICES), metavar="CHOICE",
                        help="which choices to run (default: all)")  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5, help="timing rounds (default 5)")
    parser.add_argument("--size", type=int, default=256, help="timed input height and width (default 256)")
    parser.add_argument("--scan-json", nargs="+", type=Path, default=[],
                        help="one file per model benched, in order (PAN, SRResNet): reuse its sensitivity scan, "
                             "or write it")  # fmt: skip
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
            figures[name] = bench_model(name, model.eval(), choices=choices, repeats=args.repeats, size=args.size,
                                        scan_json=scan_json, scratch=scratch)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
