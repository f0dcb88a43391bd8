"""How fast are the on-the-fly degradations? Mean milliseconds per batch of train.degrade.Degrader on the CPU.

    python -m bench.degrade_speed                    # batch 8, HR 128x128, x4 (LR 32), default options, all cores
    python -m bench.degrade_speed --threads 1 --batches 50
    python -m bench.degrade_speed --recipe pan_x4_realworld   # its options, and the share of its training step
    python -m bench.degrade_speed --blur             # the FFT blur against a direct depthwise conv, per kernel size

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
from train.degrade.kernels import blur, gaussian_kernel
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


def direct_blur(img, kernel, channels_last):
    """The blur as a depthwise F.conv2d (reflection padding, as train.degrade.kernels.blur): the reference the
    FFT blur replaced (docs/degradations.md, Speed)."""
    pad = kernel.shape[-1] // 2
    padded = torch.nn.functional.pad(img, (pad, pad, pad, pad), mode="reflect")
    weight = kernel.expand(img.shape[1], 1, *kernel.shape)
    if channels_last:
        padded, weight = (t.contiguous(memory_format=torch.channels_last) for t in (padded, weight))
    return torch.nn.functional.conv2d(padded, weight, groups=img.shape[1])


def compare_blurs(*, sizes=(32, 64, 128, 160), taps=(7, 11, 15, 21), repeats=40):
    """Mean ms of one (1, 3, s, s) image blurred by FFT, by direct conv NCHW and channels_last, per size and taps."""

    def mean_ms(function, *args):
        function(*args)
        start = time.perf_counter()
        for _ in range(repeats):
            function(*args)
        return 1000 * (time.perf_counter() - start) / repeats

    print("image  taps    FFT  conv NCHW  conv NHWC   (ms per 3-channel image)")
    for size in sizes:
        img = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(size))
        for k in taps:
            kernel = gaussian_kernel(size=k, sigma_x=2.0, sigma_y=1.0, rotation=0.5)
            figures = (mean_ms(blur, img, kernel), *(mean_ms(direct_blur, img, kernel, last) for last in (0, 1)))
            print(f"{size:5d} {k:5d} " + " ".join(f"{ms:9.3f}" for ms in figures))


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
    parser.add_argument("--blur", action="store_true", help="only compare the FFT blur with a direct conv")
    args = parser.parse_args()

    threads = args.threads or available_cores()
    torch.set_num_threads(threads)
    kernels = torch.backends.cpu.get_cpu_capability()  # ATEN_CPU_CAPABILITY can cap it below what the CPU has
    print(f"{detect_cpu().describe()}, {threads} torch threads, torch {torch.__version__} ({kernels} kernels)")
    if args.blur:
        return compare_blurs()
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
