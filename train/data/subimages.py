"""The prepare step: large images (DIV2K-size, 2K) cut once into aligned HR/LR sub-images, cached as Arrow.

`python -m train.data prepare` writes such a prepared copy with `save_to_disk`, or with `--store` a decoded store
(train/data/store.py) that training reads without decoding anything.
"""

import argparse
import io
import sys
from pathlib import Path

import datasets
import torch
from PIL import Image

from sr_models.errors import UserError, user_errors
from sr_models.evaluation.metrics import mod_crop
from sr_models.evaluation.resize import downscale_image
from sr_models.files import atomic_write_tree, claim_output, on_interrupt, removed_on_failure, writer_command
from sr_models.images import ImageError
from train.data.pairs import decode, record_name
from train.data.sources import load_source
from train.data.store import write_store


def subimage_starts(length, size, step):
    """BasicSR's extract_subimages positions: every `step`, plus one flush with the far edge."""
    starts = list(range(0, max(length - size, 0) + 1, step))
    if length > size and starts[-1] != length - size:
        starts.append(length - size)
    return starts


def cut_subimages(batch, indices, *, scale, size, step, skip_corrupt, in_worker=False):
    """`Dataset.map` function (batched): whole images -> aligned HR/LR sub-images as PNG bytes."""
    if in_worker:
        # A process forked from one that already ran OpenMP threads hangs in its first parallel op (libgomp is
        # not fork-safe); one thread runs inline. DataLoader workers do the same.
        torch.set_num_threads(1)
    out = {"hr": [], "lr": [], "name": []}
    for row_index, index in enumerate(indices):
        hr_record = batch["hr"][row_index]
        name = record_name(hr_record, f"image {index}")
        try:
            hr = mod_crop(decode(hr_record, name=name), scale)
            if "lr" in batch:
                lr = decode(batch["lr"][row_index], name=record_name(batch["lr"][row_index], f"{name} (LR)"))
            else:
                # LR of the whole image, then cut: sub-image borders see their real neighbours, as in
                # DIV2K's own LR files, not a mirror.
                lr = downscale_image(hr, scale)
        except ImageError as error:
            if not skip_corrupt:
                raise
            print(f"warning: skipped {error}", file=sys.stderr)
            continue
        if lr.shape[0] * scale != hr.shape[0] or lr.shape[1] * scale != hr.shape[1]:
            raise ImageError(f"{name}: LR {lr.shape[1]}x{lr.shape[0]} is not HR / {scale}")
        lr_size, lr_step = size // scale, step // scale
        stem = Path(name).stem
        for top in subimage_starts(lr.shape[0], lr_size, lr_step):
            for left in subimage_starts(lr.shape[1], lr_size, lr_step):
                lr_tile = lr[top : top + lr_size, left : left + lr_size]
                hr_tile = hr[top * scale : (top + lr_size) * scale, left * scale : (left + lr_size) * scale]
                out["hr"].append({"bytes": png_bytes(hr_tile), "path": None})
                out["lr"].append({"bytes": png_bytes(lr_tile), "path": None})
                out["name"].append(f"{stem}_y{top * scale}_x{left * scale}")
    return out


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)  # fast to write, lossless like DIV2K's
    return buffer.getvalue()


SUBIMAGE_FEATURES = datasets.Features(
    {"hr": datasets.Image(), "lr": datasets.Image(), "name": datasets.Value("string")}
)


def prepare_subimages(dataset, *, scale, size, step, num_proc=None, cache_dir=None, skip_corrupt=False):
    """Cut every image into size x size HR sub-images (stride `step`) with their LR, once.

    The result is written to an Arrow file named by the source's fingerprint and the settings, so a second
    run (or the other processes of this one) reads it back instead of cutting again.
    """
    if size % scale or step % scale:
        raise UserError(f"subimage_size ({size}) and subimage_step ({step}) must be multiples of the scale {scale}")
    cache_root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "sr-toolkit-subimages"
    cache_root.mkdir(parents=True, exist_ok=True)
    key = datasets.fingerprint.Hasher.hash([dataset._fingerprint, scale, size, step, skip_corrupt, "v1"])
    before = set(cache_root.glob("tmp*"))
    with removed_on_failure(lambda: set(cache_root.glob("tmp*")) - before):  # datasets' partial cache files
        prepared = dataset.map(
            cut_subimages,
            fn_kwargs={
                "scale": scale,
                "size": size,
                "step": step,
                "skip_corrupt": skip_corrupt,
                "in_worker": bool(num_proc and num_proc > 1),
            },
            with_indices=True,
            batched=True,
            batch_size=1,
            remove_columns=dataset.column_names,
            features=SUBIMAGE_FEATURES,
            num_proc=num_proc if num_proc and num_proc > 1 else None,
            cache_file_name=str(cache_root / f"{key}.arrow"),
            load_from_cache_file=True,
            desc=f"cutting {size}x{size} sub-images",
        )
    return prepared.cast_column("hr", datasets.Image(decode=False)).cast_column("lr", datasets.Image(decode=False))


@writer_command
def main(argv=None):
    with user_errors():  # ImageError, OutputError, a bad --dataset: one line naming the file, exit 1
        prepare_command(argv)


def prepare_command(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m train.data",
        description="Cut a data set of large images (DIV2K, DF2K) into aligned HR/LR sub-images, once.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="write sub-images with save_to_disk, or a decoded store (--store)")
    prepare.add_argument("--dataset", required=True, help="folder of HR images, save_to_disk folder or hub name")
    prepare.add_argument("--output", required=True, type=Path, help="folder to save_to_disk the result into")
    prepare.add_argument("--scale", type=int, default=4)
    prepare.add_argument("--split", default="train")
    prepare.add_argument("--image-column")
    prepare.add_argument("--lr-column")
    prepare.add_argument("--lr-dataset", help="folder of the official LR images, matched by stem (e.g. 0001x4.png)")
    prepare.add_argument(
        "--store",
        action="store_true",
        help="write a decoded store (train/data/store.py): whole images, decoded once, memory-mapped "
        "by every training process",
    )
    prepare.add_argument("--subimage-size", type=int, help="480 by default; 0 with --store (whole images)")
    prepare.add_argument("--subimage-step", type=int, default=240)
    prepare.add_argument("--num-proc", type=int, default=1)
    prepare.add_argument("--cache-dir")
    prepare.add_argument("--skip-corrupt", action="store_true")
    prepare.add_argument("--overwrite", action="store_true", help="replace --output if it exists and is not empty")
    args = parser.parse_args(argv)
    if args.subimage_size is None:
        args.subimage_size = 0 if args.store else 480
    with on_interrupt(f"{args.output} not written, no partial folder left"):
        sources = [p for p in (args.dataset, args.lr_dataset) if p and Path(p).exists()]
        claim_output(args.output, inputs=sources, overwrite=args.overwrite, kind="tree")
        dataset = load_source(
            args.dataset,
            split=args.split,
            image_column=args.image_column,
            lr_column=args.lr_column,
            lr_dataset=args.lr_dataset,
            cache_dir=args.cache_dir,
            scale=args.scale,
        )
        prepared = dataset
        if args.subimage_size:
            prepared = prepare_subimages(
                dataset,
                scale=args.scale,
                size=args.subimage_size,
                step=args.subimage_step,
                num_proc=args.num_proc,
                cache_dir=args.cache_dir,
                skip_corrupt=args.skip_corrupt,
            )
        counts = {}
        if args.store:

            def write(partial):
                counts["written"], counts["skipped"] = write_store(
                    prepared,
                    partial,
                    scale=args.scale,
                    num_proc=args.num_proc,
                    skip_corrupt=args.skip_corrupt,
                    label=args.dataset,
                )

            atomic_write_tree(args.output, write)
        else:
            atomic_write_tree(args.output, lambda partial: prepared.save_to_disk(str(partial)))
    if args.store:
        size = sum(f.stat().st_size for f in args.output.iterdir())
        skipped = f", {counts['skipped']} unreadable skipped" if counts["skipped"] else ""
        print(
            f"{len(dataset)} images -> a decoded store of {counts['written']} HR/LR pairs ({size / 1e9:.2f} GB"
            f"{skipped}) in {args.output}; train with --dataset {args.output}"
        )
        return
    print(
        f"{len(dataset)} images -> {len(prepared)} sub-images of {args.subimage_size}x{args.subimage_size} "
        f"in {args.output}; train with --dataset {args.output}"
    )
