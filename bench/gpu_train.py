"""bf16 training of the `pan_x4_paper` recipe on one GPU: samples/s for eager, channels_last and torch.compile,
and the fraction of step time spent waiting for data. At most about 8 minutes on a recent GPU.

    python bench/gpu_train.py                          # 2K-sized photos made here, prepared into sub-images
    python bench/gpu_train.py --dataset /data/DF2K_sub --steps 300

Each variant runs train/run.py itself (Accelerate, bf16 autocast, the recipe's batch 32 x LR 64 patches, 8
DataLoader workers over prepared 480x480 sub-images) for --steps optimizer steps; the first --warmup steps
(cuDNN autotuning, compilation) are not measured. Without --dataset the data are DIV2K-sized PNGs made from the
built-in photographs (bench/train_common.py), cut once into sub-images and cached.
"""

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from train.data import is_saved_dataset
from train_common import logged_windows, make_2k_images, run_training

VARIANTS = {
    "eager": [],
    "channels_last": ["--channels-last", "true"],
    "compile": ["--compile", "true"],
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", help="training data (default: DIV2K-sized photos made here)")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per variant")
    parser.add_argument("--warmup", type=int, default=50, help="steps not measured (autotuning, compilation)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--workdir", help="keep data and runs here (default: a temporary folder)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (only to check this script)")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.allow_cpu:
        sys.exit("error: no CUDA GPU here; this benchmark is for a GPU machine (--allow-cpu only checks the script)")
    log_every = max(1, min(25, args.warmup))
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    print(f"device: {device}, torch {torch.__version__}, recipe pan_x4_paper, bf16, {args.workers} workers")

    with tempfile.TemporaryDirectory() as temporary:
        workdir = Path(args.workdir or temporary)
        dataset = args.dataset or str(make_2k_images(workdir / "div2k_like", count=16)[0].parent)
        common = [
            "--recipe", "pan_x4_paper", "--dataset", dataset, "--mixed-precision", "bf16",
            "--steps", str(args.steps), "--val-dataset", "none", "--save-every", "0", "--log-every", str(log_every),
            "--num-workers", str(args.workers), "--progress", "false", "--log-with", "none",
            "--cache-dir", str(workdir / "hf-cache"),
        ]  # fmt: skip
        if args.dataset and is_saved_dataset(args.dataset):
            common += ["--subimage-size", "0"]  # a copy already prepared by `python -m train.data prepare`
        if args.allow_cpu and not torch.cuda.is_available():
            common += ["--batch-size", "2", "--model-overrides", "{channels: 8, upsample_channels: 8, num_blocks: 1}"]
        print(f"{'variant':<16}{'samples/s':>12}{'data wait':>12}{'wall s':>10}")
        for name in args.variants:
            start = time.perf_counter()
            run_dir = run_training([*common, *VARIANTS[name], "--output-dir", str(workdir / f"run-{name}")])
            windows = [w for w in logged_windows(run_dir) if w["step"] > args.warmup] or logged_windows(run_dir)[-1:]
            rate = statistics.median(w["samples_per_second"] for w in windows)
            wait = statistics.median(w["data_wait_fraction"] for w in windows)
            print(f"{name:<16}{rate:>12.1f}{wait:>11.1%}{time.perf_counter() - start:>10.0f}", flush=True)


if __name__ == "__main__":
    main()
