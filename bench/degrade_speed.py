"""How fast are the on-the-fly degradations? Mean milliseconds per batch of train.degrade.Degrader on the CPU.

    python -m bench.degrade_speed                    # batch 8, HR 128x128, x4 (LR 32), default options, all cores
    python -m bench.degrade_speed --threads 1 --batches 50

Each batch takes new sample indices (as training does), so the kernel sizes, resizes and noises vary from batch
to batch; the figure is the mean over `--batches` after `--warmup` batches. It moves with other programs' load.
"""

import argparse
import statistics
import time

import torch

from export.kernels import detect_cpu
from train.degrade import DegradeOptions, Degrader
from train.threads import available_cores


def time_batches(*, batch, hr_size, scale, batches, warmup, seed=0):
    """Seconds of each timed batch."""
    degrader = Degrader(options=DegradeOptions(), scale=scale, seed=seed)
    hr = torch.rand(batch, 3, hr_size, hr_size, generator=torch.Generator().manual_seed(seed))
    times = []
    for step in range(warmup + batches):
        indices = range(step * batch, (step + 1) * batch)
        start = time.perf_counter()
        degrader(hr, indices)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hr-size", type=int, default=128)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()

    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    times = time_batches(
        batch=args.batch, hr_size=args.hr_size, scale=args.scale, batches=args.batches, warmup=args.warmup
    )
    lr = args.hr_size // args.scale
    print(f"{detect_cpu().describe()}, {threads} torch threads, torch {torch.__version__}")
    print(
        f"Degrader, batch {args.batch}, HR {args.hr_size}x{args.hr_size} x{args.scale} (LR {lr}), default options: "
        f"{1000 * statistics.mean(times):.1f} ms per batch (mean of {len(times)}, min {1000 * min(times):.1f})"
    )


if __name__ == "__main__":
    main()
