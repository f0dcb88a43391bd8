"""How fast are the on-the-fly degradations? Mean milliseconds per batch of train.degrade.Degrader on the CPU.

    python -m bench.degrade_speed                    # batch 8, HR 128x128, x4 (LR 32), default options, all cores
    python -m bench.degrade_speed --threads 1 --batches 50
    python -m bench.degrade_speed --recipe pan_x4_realworld   # its options, and the share of its training step

With --recipe, the degradation options are the recipe's, and the same batches also go through one training step
of the recipe's model (forward, L1, backward, Adam; the precision `auto` picks here, channels_last as the recipe
says): the share of the step is degradation / (degradation + training step), what the feed step adds.

Each batch takes new sample indices (as training does), so the kernel sizes, resizes and noises vary from batch
to batch; the figure is the mean over `--batches` after `--warmup` batches. It moves with other programs' load.
"""

import argparse
import statistics
import time

import torch

from export.kernels import detect_cpu
from sr_models import create_model
from train.config import degrade_options, load_recipe
from train.degrade import DegradeOptions, Degrader
from train.precision import choose as choose_precision
from train.threads import available_cores


def time_batches(*, batch, hr_size, scale, batches, warmup, seed=0, options=None):
    """Seconds of each timed batch."""
    degrader = Degrader(options=options or DegradeOptions(), scale=scale, seed=seed)
    hr = torch.rand(batch, 3, hr_size, hr_size, generator=torch.Generator().manual_seed(seed))
    bicubic = torch.rand(batch, 3, hr_size // scale, hr_size // scale)  # the bicubic share's LR (taken as is)
    times = []
    for step in range(warmup + batches):
        indices = range(step * batch, (step + 1) * batch)
        start = time.perf_counter()
        degrader(hr, indices, bicubic_lr=bicubic)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times


def time_training_steps(config, *, batch, batches, warmup):
    """Seconds of each timed training step of `config`'s model on batches of `batch` LR patches (random pixels)."""
    model = create_model(config.model, scale=config.scale, **config.model_overrides)
    precision = choose_precision(config.mixed_precision, device_type="cpu").mixed_precision
    memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
    model = model.to(memory_format=memory_format).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    side = config.lr_patch_size
    lr = torch.rand(batch, 3, side, side).contiguous(memory_format=memory_format)
    hr = torch.rand(batch, 3, side * config.scale, side * config.scale)
    times = []
    for step in range(warmup + batches):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            sr = model(lr)
        loss = torch.nn.functional.l1_loss(sr.float(), hr)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= warmup:
            times.append(time.perf_counter() - start)
    return times, precision


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all cores)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--hr-size", type=int, default=128)
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--batches", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--recipe", help="take the options, patch size and model of this recipe; time its step too")
    args = parser.parse_args()

    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    config = load_recipe(args.recipe) if args.recipe else None
    if config:
        args.scale, args.hr_size = config.scale, config.lr_patch_size * config.scale
    options = degrade_options(config.degradations) if config else DegradeOptions()
    times = time_batches(
        batch=args.batch,
        hr_size=args.hr_size,
        scale=args.scale,
        batches=args.batches,
        warmup=args.warmup,
        options=options,
    )
    lr = args.hr_size // args.scale
    print(f"{detect_cpu().describe()}, {threads} torch threads, torch {torch.__version__}")
    degrade = statistics.mean(times)
    print(
        f"Degrader, batch {args.batch}, HR {args.hr_size}x{args.hr_size} x{args.scale} (LR {lr}), "
        f"{args.recipe + ' options' if config else 'default options'}: "
        f"{1000 * degrade:.1f} ms per batch (mean of {len(times)}, min {1000 * min(times):.1f})"
    )
    if config:
        steps, precision = time_training_steps(config, batch=args.batch, batches=args.batches, warmup=args.warmup)
        step = statistics.mean(steps)
        print(
            f"{config.model} x{config.scale} training step, batch {args.batch}, LR {lr}, precision {precision}: "
            f"{1000 * step:.1f} ms (mean of {len(steps)}); degradation share of the step "
            f"{degrade / (degrade + step):.1%}"
        )


if __name__ == "__main__":
    main()
