"""Training speed on this machine: the toolkit's loop against a plain PyTorch loop, and the data pipeline.

    python bench/train_speed.py                      # everything (about 15 minutes on 2 CPU cores)
    python bench/train_speed.py --models pan --variants eager channels_last --skip-data

Training steps (samples/s, higher is better), for
    PAN x4       batch 8 x 4 accumulation, LR patch 64
    SRResNet x4  batch 16, LR patch 24
    toolkit  train/run.py itself (Accelerate, its data pipeline on the built-in photos held in memory, logging)
    plain    a bare loop over the same model and the same kind of patches (made beforehand), no Accelerate,
             NCHW unless the variant says
variants: eager (fp32, NCHW), channels_last, compile (torch.compile, inductor; skipped when it fails), and
bf16_channels_last (CPU autocast: fast on CPUs with AMX / AVX512-BF16). Figures: the median step after warm-up
(and compilation) and, in brackets, the best; the ratio is of medians. Each loop runs in a fresh process, one
after the other: run this on an otherwise idle machine, the figures move with other programs' load.

Data pipeline (patches/s through a DataLoader, LR 64 x4, batch 8), from DIV2K-sized 2040x1356 PNGs:
    raw       each patch decodes a whole 2K PNG and makes its LR by MATLAB bicubic
    prepared  480x480 sub-images with their LR, cut once (train.data.prepare_subimages, cached as Arrow)

Decoded store against --cache-images (`--skip-training --skip-data` runs this part alone), from the same 2K PNGs:
    patches/s per process at 1 thread (LR 64, x4, batch 32, no workers), the start-up time of a process (opening
    the data to its first batch: mapping the store, or decoding every image and making its LR), and the memory
    each extra process adds when --store-processes processes hold the data at once, each having read all of it
    (/proc/self/smaps_rollup: private = what only this process holds, plus its page tables; PSS = shared pages
    divided among holders).
"""

import argparse
import multiprocessing
import os
import platform
import shutil
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from train_common import logged_windows, make_2k_images, run_training

from sr_models import create_model
from sr_models.errors import user_errors
from train.config import load_recipe
from train.data import (
    ImagePairs,
    PatchDataset,
    StorePairs,
    load_source,
    prepare_subimages,
    training_loader,
    training_patches,
    usable_images,
    write_store,
)

MODELS = {
    "pan": {"batch_size": 8, "accumulation": 4, "lr_patch": 64},
    "srresnet": {"batch_size": 16, "accumulation": 1, "lr_patch": 24},
}
VARIANTS = ("eager", "channels_last", "compile", "bf16_channels_last")


def plain_loop(name, *, batch_size, accumulation, lr_patch, variant, steps, warmup, device="cpu", overrides=None):
    """The reference: what anyone would write without the toolkit. Variant: "eager" (fp32, NCHW) or any of
    "bf16", "channels_last", "compile" joined by "_". Returns samples/s per step (CPU) or one figure over all
    measured steps (CUDA: timed between two synchronisations, so the queue of kernels is never drained)."""
    device = torch.device(device)
    torch.manual_seed(0)
    model = create_model(name, scale=4, **(overrides or {})).to(device)
    channels_last = "channels_last" in variant
    bf16 = "bf16" in variant
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    if "compile" in variant:
        model = torch.compile(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    # The same kind of patches as the toolkit's (real photographs: random numbers run about 5% faster through
    # PAN in fp32, having fewer denormal values), made before the loop, so that no data work is timed.
    patches, _ = training_patches(load_recipe("quickstart", lr_patch_size=lr_patch), length=batch_size * accumulation)
    batches = []
    for first in range(0, batch_size * accumulation, batch_size):
        samples = [patches[i] for i in range(first, first + batch_size)]
        lr = torch.stack([sample["lr"] for sample in samples]).float().to(device) / 255  # (B, 3, p, p)
        hr = torch.stack([sample["hr"] for sample in samples]).float().to(device) / 255  # (B, 3, 4p, 4p)
        batches.append((lr.contiguous(memory_format=torch.channels_last) if channels_last else lr, hr))

    def step():
        for lr, hr in batches:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                sr = model(lr)
            loss = F.l1_loss(sr.float(), hr) / accumulation
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    if device.type == "cuda":
        for _ in range(warmup):
            step()
        torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        return [steps * batch_size * accumulation / (time.perf_counter() - start)]
    times = []
    for _ in range(warmup + steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return [batch_size * accumulation / t for t in times[warmup:]]


def toolkit_loop(name, *, batch_size, accumulation, lr_patch, variant, steps, warmup, workdir):
    """train/run.py on the built-in photos (decoded once into memory), no validation, no checkpoints."""
    config = load_recipe(
        "quickstart",
        model=name,
        steps=warmup + steps,
        batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        lr_patch_size=lr_patch,
        val_dataset="none",
        log_every=1,
        progress=False,
        log_with="none",
        warmup_fraction=0.0,
        lr=1e-4,
        grad_clip=0.0,
        repeat_images=True,  # 12 photos, batch 16
        num_threads=torch.get_num_threads(),  # as the plain loop: no thread tuning in a benchmark
        mixed_precision="bf16" if variant.startswith("bf16") else "no",
        channels_last="channels_last" in variant,
        compile=variant == "compile",
        output_dir=str(Path(workdir) / f"{name}-{variant}-{time.monotonic_ns()}"),
    )
    windows = logged_windows(run_training(config))
    return [w["samples_per_second"] for w in windows[warmup:]]


def bench_training(models, variants, *, steps, warmup, workdir):
    print(f"\ntraining step, samples/s over {steps} steps after {warmup} warm-up: median (best)")
    print(f"{'model':<10}{'variant':<20}{'plain':>16}{'toolkit':>16}{'toolkit/plain':>15}")
    for name in models:
        shape = MODELS[name]
        for variant in variants:
            try:
                plain = in_a_fresh_process(plain_loop, name, **shape, variant=variant, steps=steps, warmup=warmup)
                toolkit = in_a_fresh_process(
                    toolkit_loop, name, **shape, variant=variant, steps=steps, warmup=warmup, workdir=workdir
                )
            except Exception as error:  # torch.compile needs a working C++ toolchain; report, don't stop
                print(f"{name:<10}{variant:<20}  failed: {type(error).__name__}: {str(error).splitlines()[0][:80]}")
                continue
            ratio = statistics.median(toolkit) / statistics.median(plain)
            print(f"{name:<10}{variant:<20}{figures(plain):>16}{figures(toolkit):>16}{ratio:>15.2f}", flush=True)


def in_a_fresh_process(function, *args, **kwargs):
    """Each loop starts from an untouched heap and thread pool: the toolkit changes the C library's allocator
    settings of its process (train/cpu_memory.py), which would otherwise carry over into the next plain loop."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args, **kwargs).result()


def figures(rates):
    return f"{statistics.median(rates):.2f} ({max(rates):.2f})"


def patches_per_second(pairs, *, workers, batches, lr_patch=64, batch_size=8):
    patches = PatchDataset(pairs, lr_patch_size=lr_patch, length=batches * batch_size, seed=0)
    loader = training_loader(patches, batch_size=batch_size, num_workers=workers, persistent_workers=False)
    start = time.perf_counter()
    count = sum(len(batch["lr"]) for batch in loader)
    return count / (time.perf_counter() - start)


def bench_data(*, workdir, images, batches):
    folder = Path(workdir) / "div2k_like"
    made = time.perf_counter()
    paths = make_2k_images(folder, count=images)
    print(
        f"\ndata pipeline, patches/s (LR 64 x4, batch 8), from {len(paths)} PNGs of 2040x1356 "
        f"({sum(p.stat().st_size for p in paths) / len(paths) / 1e6:.1f} MB each; made in "
        f"{time.perf_counter() - made:.0f} s)"
    )
    cache = str(Path(workdir) / "hf-cache")
    raw = load_source(str(folder), split="train", cache_dir=cache)
    start = time.perf_counter()
    prepared = prepare_subimages(raw, scale=4, size=480, step=240, cache_dir=cache, num_proc=os.cpu_count())
    print(
        f"prepare step: {len(raw)} images -> {len(prepared)} sub-images of 480x480 in "
        f"{time.perf_counter() - start:.1f} s (once; cached as Arrow)"
    )
    print(f"{'source':<12}{'workers':>8}{'patches/s':>12}")
    for label, dataset in (("raw", raw), ("prepared", prepared)):
        pairs = ImagePairs(dataset, scale=4)
        for workers in sorted({0, os.cpu_count()}):
            rate = patches_per_second(pairs, workers=workers, batches=batches if label == "raw" else 4 * batches)
            print(f"{label:<12}{workers:>8}{rate:>12.1f}", flush=True)


def open_training_data(kind, path):
    """A process's start: the training pairs of `kind` ("store" or "cache") opened up to their usable list."""
    if kind == "store":
        pairs = StorePairs(path, scale=4)
    else:  # --cache-images: decode every image and make its LR, in this process
        pairs = ImagePairs(
            load_source(str(path), split="train", cache_dir=str(Path(path).parent / "hf-cache")), scale=4
        )
    usable, _ = usable_images(pairs, lr_patch_size=64, small_images="error", skip_corrupt=False)
    if kind == "cache":
        pairs.cache_all(usable)
    return pairs


def memory_kib():
    """This process's resident memory in KiB: {"rss", "pss", "private"} from /proc/self/smaps_rollup, private
    including the page tables (VmPTE in /proc/self/status)."""
    fields = {}
    for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":")
        fields[key] = int(value.split()[0])
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    private = fields["Private_Clean"] + fields["Private_Dirty"]
    page_tables = int(status["VmPTE"].split()[0])  # the mapping's own cost, not in smaps
    return {"rss": fields["Rss"], "pss": fields["Pss"], "private": private + page_tables}


def hold_training_data(kind, path, barrier, results):
    """One process of the memory figure: open the data, read all of it, wait until every process has, measure."""
    torch.set_num_threads(1)
    before = memory_kib()
    pairs = open_training_data(kind, path)
    checksum = sum(
        int(hr.sum(dtype=np.uint64)) + int(lr.sum(dtype=np.uint64))  # every page read
        for hr, lr in map(pairs.load, range(len(pairs)))
    )
    barrier.wait()  # all processes hold the data now: shared pages are shared
    after = memory_kib()
    results.put({"checksum": checksum, **{key: after[key] - before[key] for key in after}})
    barrier.wait()  # stay alive (and holding) until every process has measured


def startup_seconds(kind, path):
    """A fresh process's time from opening the data to its first batch of 32 patches."""
    torch.set_num_threads(1)
    start = time.perf_counter()
    patches = PatchDataset(open_training_data(kind, path), lr_patch_size=64, length=32)
    next(iter(training_loader(patches, batch_size=32, num_workers=0, persistent_workers=False)))
    return time.perf_counter() - start


def bench_store(*, workdir, images, batches, processes):
    folder = Path(workdir) / "div2k_like"
    paths = make_2k_images(folder, count=images)
    store = Path(workdir) / "div2k_like.store"
    shutil.rmtree(store, ignore_errors=True)
    start = time.perf_counter()
    write_store(
        load_source(str(folder), split="train", cache_dir=str(Path(workdir) / "hf-cache")),
        store,
        scale=4,
        num_proc=os.cpu_count(),
    )
    data_mib = sum(f.stat().st_size for f in store.iterdir()) / 2**20
    print(
        f"\ndecoded store from {len(paths)} PNGs of 2040x1356: written in {time.perf_counter() - start:.1f} s "
        f"(once), {data_mib:.1f} MiB of decoded HR + LR"
    )
    torch.set_num_threads(1)
    print(
        "per process, 1 thread, LR 64 x4, batch 32, no workers, steady state (1st pass: the first touch of the "
        "store's pages included); start-up: a fresh "
        f"process to its first batch; memory: with {processes} processes holding the data at once (each read all "
        "of it), what each one adds"
    )
    print(
        f"{'source':<16}{'patches/s':>11}{'1st pass':>10}{'start-up s':>12}{'private MiB':>13}{'PSS MiB':>10}"
        f"{'of data':>9}"
    )
    context = multiprocessing.get_context("spawn")
    figures = {}
    for kind, path in (("cache", folder), ("store", store)):
        startup = in_a_fresh_process(startup_seconds, kind, path)
        pairs = open_training_data(kind, path)
        # Twice over the same patches: the first pass maps the store's pages into this process (a minor page
        # fault per page, once per process: what a first epoch pays), the second is the steady state.
        first = patches_per_second(pairs, workers=0, batches=batches, batch_size=32)
        rate = patches_per_second(pairs, workers=0, batches=batches, batch_size=32)
        barrier, results = context.Barrier(processes), context.Queue()
        workers = [
            context.Process(target=hold_training_data, args=(kind, path, barrier, results)) for _ in range(processes)
        ]
        for worker in workers:
            worker.start()
        measured = [results.get(timeout=600) for _ in workers]
        for worker in workers:
            worker.join()
        assert len({m["checksum"] for m in measured}) == 1, "every process read the same data"
        private = statistics.median(m["private"] for m in measured) / 1024
        pss = statistics.median(m["pss"] for m in measured) / 1024
        label = "--cache-images" if kind == "cache" else "decoded store"
        print(
            f"{label:<16}{rate:>11.1f}{first:>10.1f}{startup:>12.2f}"
            f"{private:>13.1f}{pss:>10.1f}{private / data_mib:>9.1%}",
            flush=True,
        )
        figures[kind] = {
            "patches_per_second": rate,
            "first_pass_patches_per_second": first,
            "startup_s": startup,
            "private_mib": private,
            "pss_mib": pss,
        }
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--steps", type=int, default=3, help="measured optimizer steps per figure")
    parser.add_argument("--warmup", type=int, default=1, help="steps before measuring (compilation happens here)")
    parser.add_argument("--images", type=int, default=6, help="2K images for the data pipeline")
    parser.add_argument("--batches", type=int, default=6, help="batches per data figure (raw; prepared: 4x)")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--skip-data", action="store_true")
    parser.add_argument("--skip-store", action="store_true")
    parser.add_argument("--store-processes", type=int, default=3, help="processes holding the data at once")
    parser.add_argument("--workdir", help="keep the 2K images and runs here (default: a temporary folder)")
    args = parser.parse_args()
    load_recipe("quickstart")  # fail early on a broken install
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    torch.set_num_threads(threads)
    print(
        f"machine: {platform.processor() or platform.machine()}, {threads} CPU threads, torch {torch.__version__}, "
        f"{'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}"
    )
    with tempfile.TemporaryDirectory() as temporary:
        workdir = args.workdir or temporary
        if not args.skip_training:
            bench_training(args.models, args.variants, steps=args.steps, warmup=args.warmup, workdir=workdir)
            torch.set_num_threads(threads)
        if not args.skip_data:
            bench_data(workdir=workdir, images=args.images, batches=args.batches)
        if not args.skip_store:
            bench_store(workdir=workdir, images=args.images, batches=4 * args.batches, processes=args.store_processes)


if __name__ == "__main__":
    with user_errors():  # a bad file or option: one line, exit 1 (sr_models/errors.py)
        main()
