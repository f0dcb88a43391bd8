"""Training and validation data through Hugging Face `datasets`.

Where images come from (`--dataset`, and `--val-dataset` for validation):
    builtin               scikit-image's sample photographs, installed with scikit-image (no network): some for
                          training, others held out for validation (BUILTIN_TRAIN, BUILTIN_HELD_OUT)
    a folder of images    the `imagefolder` builder (its index is cached as Arrow in the datasets cache)
    a save_to_disk folder `datasets.load_from_disk` (a Dataset, or a DatasetDict and --split)
    anything else         a hub data set: `load_dataset(name, split=--split)`

Each source becomes a `datasets.Dataset` with an `hr` column and, for paired data, an `lr` column (from
`--lr-column`, or `--lr-dataset`: a folder of LR files matched by stem). Images are kept undecoded
(`Image(decode=False)`) and decoded here through `sr_models.images`, so a corrupt file is named in the error.
HR-only data gets its LR from the MATLAB-compatible bicubic (`sr_models.resize`) of the whole mod-cropped image.

Training samples are random aligned LR/HR patches with flips and 90-degree rotations. The sample at position i
of the run is a pure function of (seed, i): which image, where the patch is, which flips. So a run resumed at
step N (skipping N x batches) sees exactly the patches an uninterrupted run sees, with any number of workers.

Large images (DIV2K-size, 2K) are cut once into sub-images by `prepare_subimages` (`Dataset.map` cached to an
Arrow file), so that a training step never decodes a whole 2K PNG; `python -m train.data prepare` writes such a
prepared copy with `save_to_disk`.

Small-image rule: an image whose LR is smaller than the LR patch fails with an error naming it
(`small_images: error`, the default), is left out and counted (`skip`), or is mirror-padded at the bottom and
right, LR and HR alike so they stay aligned (`pad`).
"""

import argparse
import io
import sys
import warnings
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image, ImageOps

from sr_models.images import ImageError, _to_rgb_array, list_images, load_rgb
from sr_models.metrics import mod_crop
from sr_models.resize import downscale_image

# scikit-image's photographs (skimage/data), colour and grayscale. Held out: a portrait, an animal and a still
# life, three colour photographs of scenes the training set does not show (the motorcycle stereo pair stays
# together on the training side: one of the two would be a near-copy of the other).
BUILTIN_TRAIN = (
    "rocket.jpg", "hubble_deep_field.jpg", "ihc.png", "retina.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "camera.png", "brick.png", "grass.png", "gravel.png", "coins.png", "moon.png",
)  # fmt: skip
BUILTIN_HELD_OUT = ("astronaut.png", "chelsea.png", "coffee.png")


def builtin_folder():
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"


# ---------------------------------------------------------------------------------------------------------------
# Sources -> datasets.Dataset with "hr" [and "lr"] image columns, undecoded.


def builtin_dataset(names):
    paths = [str(builtin_folder() / name) for name in names]
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise ImageError(f"{missing[0]}: built-in image missing (is scikit-image installed completely?)")
    return datasets.Dataset.from_dict({"hr": paths}).cast_column("hr", datasets.Image(decode=False))


def is_saved_dataset(path):
    path = Path(path)
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def load_source(source, *, split, image_column=None, lr_column=None, lr_dataset=None, cache_dir=None, scale=4):
    """Any supported source as a Dataset with an `hr` column and, for paired data, an `lr` column."""
    if source == "builtin":
        dataset = builtin_dataset(BUILTIN_TRAIN)
    elif is_saved_dataset(source):
        dataset = datasets.load_from_disk(source)
        if isinstance(dataset, datasets.DatasetDict):
            if split not in dataset:
                raise ValueError(f"{source}: no split {split!r}; splits: {', '.join(dataset)}")
            dataset = dataset[split]
    elif Path(source).is_dir():
        list_images(source)  # a clear error for a folder without images, before the builder's
        dataset = datasets.load_dataset("imagefolder", data_dir=str(source), split="train", cache_dir=cache_dir)
    elif Path(source).exists():
        raise ValueError(f"{source}: not a folder of images nor a data set saved with save_to_disk")
    else:
        try:
            dataset = datasets.load_dataset(source, split=split, cache_dir=cache_dir)
        except Exception as error:  # offline, unknown name, no such split: one line, not the Hub's traceback
            raise ValueError(f"{source}: not a local folder, and loading it from the Hugging Face Hub failed "
                             f"({type(error).__name__}: {' '.join(str(error).split())[:300]})") from None  # fmt: skip
    dataset = select_columns(dataset, source=source, image_column=image_column, lr_column=lr_column)
    if lr_dataset is not None:
        dataset = pair_with_folder(dataset, lr_dataset, scale=scale)
    return dataset


def select_columns(dataset, *, source, image_column, lr_column):
    """Rename the HR (and LR) image columns to `hr` (and `lr`), drop the rest, and keep images undecoded."""
    image_columns = [name for name, feature in dataset.features.items() if isinstance(feature, datasets.Image)]

    def pick(name, default, role):
        if name is not None:
            if name not in dataset.column_names:
                raise ValueError(f"{source}: no column {name!r} for the {role} images; columns: {dataset.column_names}")
            return name
        return default

    hr = pick(image_column, None, "HR")
    if hr is None:
        if "hr" in image_columns:
            hr = "hr"
        elif len(image_columns) == 1:
            hr = image_columns[0]
        else:
            found = ", ".join(image_columns) or "none"
            raise ValueError(f"{source}: cannot tell which column holds the HR images (image columns: {found}); "
                             "name it with --image-column")  # fmt: skip
    lr = pick(lr_column, "lr" if "lr" in image_columns and hr != "lr" else None, "LR")
    keep = {hr: "hr", **({lr: "lr"} if lr else {})}
    dataset = dataset.select_columns(list(keep))
    # A column of file paths (strings) becomes an image column too.
    for old in keep:
        dataset = dataset.cast_column(old, datasets.Image(decode=False))
    for old, new in keep.items():
        if old != new:
            dataset = dataset.rename_column(old, new)
    return dataset


def find_lr_file(lr_dir, stem, scale):
    from train.evaluate import find_lr_file as find  # the benchmark layout rule: <stem>x4.png or <stem>.png

    return str(find(lr_dir, stem, scale))


def pair_with_folder(dataset, lr_dir, *, scale):
    """Add an `lr` column: for each HR file, the LR file of the same stem in `lr_dir`."""
    if not Path(lr_dir).is_dir():
        raise ImageError(f"{lr_dir}: no such folder (--lr-dataset)")
    lr_paths = []
    for record in dataset["hr"]:
        if not record.get("path"):
            raise ValueError("--lr-dataset pairs by file name, but these HR images have no file names")
        lr_paths.append(find_lr_file(lr_dir, Path(record["path"]).stem, scale))
    return dataset.add_column("lr", lr_paths).cast_column("lr", datasets.Image(decode=False))


# ---------------------------------------------------------------------------------------------------------------
# Decoding


def record_name(record, fallback):
    return record.get("path") or fallback


def decode(record, *, name):
    """An undecoded image record {"bytes", "path"} as HxWx3 uint8 RGB; ImageError naming `name` otherwise."""
    if record is None:
        raise ImageError(f"{name}: no image in this row")
    if record.get("bytes"):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(record["bytes"])) as image:
                    image.load()
                    image = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, EOFError, ValueError, Image.DecompressionBombError,
                Image.DecompressionBombWarning) as error:  # fmt: skip
            raise ImageError(f"{name}: truncated or corrupt image data ({' '.join(str(error).split())})") from None
        return _to_rgb_array(image, name)
    if record.get("path"):
        return load_rgb(record["path"])
    raise ImageError(f"{name}: row has neither image bytes nor a file path")


def image_size(record, *, name):
    """(width, height) from the image header only: cheap enough to check every image before training."""
    try:
        source = io.BytesIO(record["bytes"]) if record.get("bytes") else record["path"]
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as image:
                return image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        # Pillow's limit stays on: a header claiming billions of pixels is refused before any decoding.
        raise ImageError(f"{name}: too many pixels to decode safely ({' '.join(str(error).split())}); "
                         "raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted") from None
    except (OSError, SyntaxError, ValueError, TypeError, KeyError) as error:
        raise ImageError(f"{name}: not a readable image ({' '.join(str(error).split())})") from None


class ImagePairs:
    """HR/LR uint8 image pairs of a Dataset with `hr` [`lr`] columns: HR mod-cropped, LR = HR / scale in size."""

    def __init__(self, dataset, *, scale, label="dataset"):
        self.dataset = dataset
        self.scale = scale
        self.label = label
        self.paired = "lr" in dataset.column_names
        self.cache = None

    def __len__(self):
        return len(self.dataset)

    def name(self, index):
        return record_name(self.dataset[index]["hr"], f"{self.label}[{index}]")

    def lr_size(self, index):
        """(height, width) of the LR image, from headers."""
        row = self.dataset[index]
        if self.paired:
            lr_name = record_name(row["lr"], f"{self.label}[{index}] (LR)")
            width, height = image_size(row["lr"], name=lr_name)
            # Checked here, from headers, so that a bad pair stops the run before training, not hours into it.
            hr_name = record_name(row["hr"], f"{self.label}[{index}]")
            hr_width, hr_height = image_size(row["hr"], name=hr_name)
            s = self.scale
            if (height * s, width * s) != (hr_height - hr_height % s, hr_width - hr_width % s):
                raise ImageError(f"{lr_name}: LR is {width}x{height}, but its HR {hr_name} mod-cropped is "
                                 f"{hr_width - hr_width % s}x{hr_height - hr_height % s}, not {s} times that")  # fmt: skip
            return height, width
        width, height = image_size(row["hr"], name=record_name(row["hr"], f"{self.label}[{index}]"))
        return height // self.scale, width // self.scale

    def load(self, index):
        if self.cache is not None:
            return self.cache[index]
        row = self.dataset[index]
        hr_name = record_name(row["hr"], f"{self.label}[{index}]")
        hr = mod_crop(decode(row["hr"], name=hr_name), self.scale)
        if hr.size == 0:
            raise ImageError(f"{hr_name}: smaller than the scale {self.scale}: not one LR pixel")
        if not self.paired:
            return hr, downscale_image(hr, self.scale)
        lr_name = record_name(row["lr"], f"{self.label}[{index}] (LR)")
        lr = decode(row["lr"], name=lr_name)
        if (lr.shape[0] * self.scale, lr.shape[1] * self.scale) != hr.shape[:2]:
            raise ImageError(f"{lr_name}: LR is {lr.shape[1]}x{lr.shape[0]}, but its HR {hr_name} mod-cropped is "
                             f"{hr.shape[1]}x{hr.shape[0]}, not {self.scale} times that")  # fmt: skip
        return hr, lr

    def cache_all(self, indices):
        """Decode the images once (and make their LR) and keep them in memory."""
        self.cache = {i: self.load(i) for i in indices}


# ---------------------------------------------------------------------------------------------------------------
# Random patches


class PatchDataset(torch.utils.data.Dataset):
    """`length` random aligned patches: {"lr": (3, p, p) uint8, "hr": (3, p*s, p*s) uint8, "skipped": int}.

    Sample i takes image `order(i // n)[i % n]` of the n usable images (a fresh seeded permutation per pass), so
    every image is used once per pass; its crop and flips come from a generator seeded with (seed, i).
    """

    def __init__(self, pairs, *, lr_patch_size, length, seed=0, flips=True, rot90=True, small_images="error",
                 skip_corrupt=False, usable=None):  # fmt: skip
        self.pairs = pairs
        self.scale = pairs.scale
        self.patch = lr_patch_size
        self.length = length
        self.seed = seed
        self.flips, self.rot90 = flips, rot90
        self.small_images = small_images
        self.skip_corrupt = skip_corrupt
        self.usable = list(range(len(pairs))) if usable is None else list(usable)
        if not self.usable:
            raise ImageError(f"{pairs.label}: no usable training images")
        self.warned = set()
        self._order = (None, None)

    def __len__(self):
        return self.length

    def order(self, epoch):
        if self._order[0] != epoch:  # one permutation per pass over the images, computed once per worker
            self._order = (epoch, np.random.default_rng([self.seed, epoch, 0x5EED]).permutation(len(self.usable)))
        return self._order[1]

    def __getitem__(self, index):
        rng = np.random.default_rng([self.seed, index])
        n = len(self.usable)
        position = int(self.order(index // n)[index % n])
        skipped = 0
        for attempt in range(n):
            image = self.usable[(position + attempt) % n]
            try:
                hr, lr = self.pairs.load(image)
                break
            except ImageError as error:
                if not self.skip_corrupt:
                    raise
                skipped += 1
                if image not in self.warned:  # once per file and worker
                    self.warned.add(image)
                    print(f"warning: skipped {error}", file=sys.stderr)
        else:
            raise ImageError(f"{self.pairs.label}: every image failed to load")
        lr, hr = self.fit(lr, hr, name=self.pairs.name(image))
        lr_patch, hr_patch = self.crop(lr, hr, rng)
        return {
            "lr": torch.from_numpy(np.ascontiguousarray(lr_patch.transpose(2, 0, 1))),  # (3, p, p)
            "hr": torch.from_numpy(np.ascontiguousarray(hr_patch.transpose(2, 0, 1))),  # (3, p*s, p*s)
            "skipped": skipped,
        }

    def fit(self, lr, hr, *, name):
        """Apply the small-image rule to an LR image smaller than the patch."""
        short_h, short_w = max(0, self.patch - lr.shape[0]), max(0, self.patch - lr.shape[1])
        if not (short_h or short_w):
            return lr, hr
        if self.small_images != "pad":  # "skip" images were left out before training
            raise small_image_error(name, lr.shape, self.patch, self.scale)
        # Symmetric (edge-repeating) padding keeps LR and HR aligned: LR row h+k mirrors row h-1-k, and the HR
        # rows of LR row h+k mirror the HR rows of row h-1-k.
        s = self.scale
        lr = np.pad(lr, ((0, short_h), (0, short_w), (0, 0)), mode="symmetric")
        hr = np.pad(hr, ((0, short_h * s), (0, short_w * s), (0, 0)), mode="symmetric")
        return lr, hr

    def crop(self, lr, hr, rng):
        p, s = self.patch, self.scale
        top = int(rng.integers(0, lr.shape[0] - p + 1))
        left = int(rng.integers(0, lr.shape[1] - p + 1))
        lr = lr[top : top + p, left : left + p]
        hr = hr[top * s : (top + p) * s, left * s : (left + p) * s]
        hflip, vflip, transpose = rng.random(3) < 0.5  # drawn whatever the options, so they don't shift crops
        if self.flips and hflip:
            lr, hr = lr[:, ::-1], hr[:, ::-1]
        if self.flips and vflip:
            lr, hr = lr[::-1], hr[::-1]
        if self.rot90 and transpose:  # with both flips: all 8 rotations and mirror images
            lr, hr = lr.transpose(1, 0, 2), hr.transpose(1, 0, 2)
        return lr, hr


def small_image_error(name, lr_shape, patch, scale):
    return ImageError(
        f"{name}: too small for the patch: LR {lr_shape[1]}x{lr_shape[0]} (HR {lr_shape[1] * scale}x"
        f"{lr_shape[0] * scale}) < LR patch {patch}x{patch}; use --small-images skip or pad, or a smaller "
        "--lr-patch-size"
    )


def usable_images(pairs, *, lr_patch_size, small_images, skip_corrupt):
    """Indices of images to train on, after the small-image rule and, with skip_corrupt, unreadable headers.

    Returns (indices, {"small": n, "corrupt": n}). Only headers are read, so this is quick even for DIV2K.
    """
    usable, left_out = [], {"small": 0, "corrupt": 0}
    for index in range(len(pairs)):
        try:
            height, width = pairs.lr_size(index)
        except ImageError as error:
            if not skip_corrupt:
                raise
            print(f"warning: skipped {error}", file=sys.stderr)
            left_out["corrupt"] += 1
            continue
        if min(height, width) < lr_patch_size:
            # An image smaller than the scale has no LR pixel to pad from: refused even with "pad".
            if small_images == "error" or (small_images == "pad" and min(height, width) == 0):
                raise small_image_error(pairs.name(index), (height, width), lr_patch_size, pairs.scale)
            if small_images == "skip":
                left_out["small"] += 1
                continue
        usable.append(index)
    return usable, left_out


# ---------------------------------------------------------------------------------------------------------------
# The prepare step: sub-images, cached as Arrow


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


SUBIMAGE_FEATURES = datasets.Features({"hr": datasets.Image(), "lr": datasets.Image(), "name": datasets.Value("string")})


def prepare_subimages(dataset, *, scale, size, step, num_proc=None, cache_dir=None, skip_corrupt=False):
    """Cut every image into size x size HR sub-images (stride `step`) with their LR, once.

    The result is written to an Arrow file named by the source's fingerprint and the settings, so a second
    run (or the other processes of this one) reads it back instead of cutting again.
    """
    if size % scale or step % scale:
        raise ValueError(f"subimage_size ({size}) and subimage_step ({step}) must be multiples of the scale {scale}")
    cache_root = Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "sr-toolkit-subimages"
    cache_root.mkdir(parents=True, exist_ok=True)
    key = datasets.fingerprint.Hasher.hash([dataset._fingerprint, scale, size, step, skip_corrupt, "v1"])
    prepared = dataset.map(
        cut_subimages,
        fn_kwargs={"scale": scale, "size": size, "step": step, "skip_corrupt": skip_corrupt,
                   "in_worker": bool(num_proc and num_proc > 1)},
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


# ---------------------------------------------------------------------------------------------------------------
# Putting it together


def training_images(config):
    """The ImagePairs of the config's training source (prepared into sub-images if asked)."""
    dataset = load_source(
        config.dataset, split=config.split, image_column=config.image_column, lr_column=config.lr_column,
        lr_dataset=config.lr_dataset, cache_dir=config.cache_dir, scale=config.scale,
    )  # fmt: skip
    if config.subimage_size:
        dataset = prepare_subimages(
            dataset, scale=config.scale, size=config.subimage_size, step=config.subimage_step,
            num_proc=config.num_workers, cache_dir=config.cache_dir, skip_corrupt=config.skip_corrupt,
        )  # fmt: skip
    return ImagePairs(dataset, scale=config.scale, label=config.dataset)


def training_patches(config, *, length):
    """The PatchDataset of a config, and what was left out before training ({"small", "corrupt"})."""
    pairs = training_images(config)
    usable, left_out = usable_images(
        pairs, lr_patch_size=config.lr_patch_size, small_images=config.small_images, skip_corrupt=config.skip_corrupt
    )
    if config.cache_images or config.dataset == "builtin":  # the built-in set is small: decode it once
        pairs.cache_all(usable)
    patches = PatchDataset(
        pairs, lr_patch_size=config.lr_patch_size, length=length, seed=config.seed, flips=config.flips,
        rot90=config.rot90, small_images=config.small_images, skip_corrupt=config.skip_corrupt, usable=usable,
    )  # fmt: skip
    return patches, left_out


def check_enough_images(patches, *, processes, batch_size, repeat_images, label):
    """Refuse, before any training, a data set with fewer usable images than one micro-batch of all processes
    takes: each of those patches should come from a different image (PatchDataset hands consecutive samples
    distinct images); with fewer, every micro-batch crops the same images again, which is rarely what was meant."""
    needed = processes * batch_size
    if len(patches.usable) < needed and not repeat_images:
        raise ImageError(
            f"{label}: too small for {processes} process(es) x batch size {batch_size}: {len(patches.usable)} usable "
            f"training image(s), but one micro-batch takes {needed} patches, each from a different image. Use more "
            "images, cut large ones into sub-images (--subimage-size), lower --batch-size, run fewer processes, or "
            "pass --repeat-images true to crop some images more than once per micro-batch"
        )


def training_loader(patches, *, batch_size, num_workers, persistent_workers, pin_memory=False):
    # No shuffling here: PatchDataset is already a seeded random stream, and a sequential order is what lets
    # skip_first_batches resume it exactly.
    return torch.utils.data.DataLoader(
        patches,
        batch_size=batch_size,
        shuffle=False,
        drop_last=True,
        num_workers=num_workers,
        persistent_workers=persistent_workers and num_workers > 0,
        pin_memory=pin_memory,
    )


def validation_samples(config):
    """Held-out `Sample`s (train.evaluate): LR made by MATLAB bicubic unless the source has LR images."""
    from train.evaluate import Sample, load_benchmark

    source, scale = config.val_dataset, config.scale
    if source == "none":
        return []
    if source == "builtin":
        samples = []
        for name in BUILTIN_HELD_OUT:
            hr = mod_crop(load_rgb(builtin_folder() / name), scale)
            samples.append(Sample(Path(name).stem, downscale_image(hr, scale), hr))
    elif Path(source, "HR").is_dir():  # benchmark layout: HR/ and LR_bicubic/X<scale>/
        lr_dir = Path(source, "LR_bicubic", f"X{scale}")
        samples = load_benchmark(Path(source, "HR"), scale=scale, lr_dir=lr_dir if lr_dir.is_dir() else None)
    elif Path(source).is_dir() and not is_saved_dataset(source):
        samples = load_benchmark(source, scale=scale)
    else:
        pairs = ImagePairs(
            load_source(source, split=config.val_split, cache_dir=config.cache_dir, scale=scale), scale=scale,
            label=source,
        )  # fmt: skip
        count = min(len(pairs), config.val_images or len(pairs))
        samples = []
        for index in range(count):
            hr, lr = pairs.load(index)
            samples.append(Sample(Path(pairs.name(index)).stem, lr, hr))
    return samples[: config.val_images] if config.val_images else samples


# ---------------------------------------------------------------------------------------------------------------
# python -m train.data prepare: a prepared (sub-image) copy of a data set, written with save_to_disk


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m train.data",
        description="Cut a data set of large images (DIV2K, DF2K) into aligned HR/LR sub-images, once.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    prepare = sub.add_parser("prepare", help="write sub-images with save_to_disk")
    prepare.add_argument("--dataset", required=True, help="folder of HR images, save_to_disk folder or hub name")
    prepare.add_argument("--output", required=True, type=Path, help="folder to save_to_disk the result into")
    prepare.add_argument("--scale", type=int, default=4)
    prepare.add_argument("--split", default="train")
    prepare.add_argument("--image-column")
    prepare.add_argument("--lr-column")
    prepare.add_argument("--lr-dataset", help="folder of the official LR images, matched by stem (e.g. 0001x4.png)")
    prepare.add_argument("--subimage-size", type=int, default=480)
    prepare.add_argument("--subimage-step", type=int, default=240)
    prepare.add_argument("--num-proc", type=int, default=1)
    prepare.add_argument("--cache-dir")
    prepare.add_argument("--skip-corrupt", action="store_true")
    args = parser.parse_args(argv)
    try:
        dataset = load_source(
            args.dataset, split=args.split, image_column=args.image_column, lr_column=args.lr_column,
            lr_dataset=args.lr_dataset, cache_dir=args.cache_dir, scale=args.scale,
        )  # fmt: skip
        prepared = prepare_subimages(
            dataset, scale=args.scale, size=args.subimage_size, step=args.subimage_step, num_proc=args.num_proc,
            cache_dir=args.cache_dir, skip_corrupt=args.skip_corrupt,
        )  # fmt: skip
    except ValueError as error:  # ImageError included: one line naming the file
        sys.exit(f"error: {error}")
    prepared.save_to_disk(str(args.output))
    print(f"{len(dataset)} images -> {len(prepared)} sub-images of {args.subimage_size}x{args.subimage_size} "
          f"in {args.output}; train with --dataset {args.output}")  # fmt: skip


if __name__ == "__main__":
    main()
