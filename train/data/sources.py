"""Sources -> a `datasets.Dataset` with `hr` [and `lr`] image columns, kept undecoded.

builtin               scikit-image's sample photographs (sr_models.builtin): the training ones
a folder of images    the `imagefolder` builder (its index is cached as Arrow in the datasets cache)
a save_to_disk folder `datasets.load_from_disk` (a Dataset, or a DatasetDict and --split)
anything else         a hub data set: `load_dataset(name, split=--split)`
"""

import os
import sys
from contextlib import contextmanager
from pathlib import Path

import datasets

from sr_models.builtin import BUILTIN_TRAIN, builtin_folder
from sr_models.errors import UserError
from sr_models.evaluation.samples import find_lr_file
from sr_models.images import IMAGE_SUFFIXES, ImageError, list_images
from train.data.pairs import say_what_is_not_kept


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
                raise UserError(f"{source}: no split {split!r}; splits: {', '.join(dataset)}")
            dataset = dataset[split]
    elif Path(source).is_dir():
        list_images(source)  # a clear error for a folder without images, before the builder's
        # data_files names every image file as one split, explicitly: left to itself, the builder reads names like
        # train0.png or test_1.jpg as split names and silently drops the other files of the folder, and a
        # metadata.jsonl/.csv it finds limits the data set to the files it lists (and adds its columns).
        files, ignored = folder_images(source)
        say_ignored(source, ignored)
        with local_files_quietly():
            dataset = datasets.load_dataset(
                "imagefolder", data_files={"train": [str(f) for f in files]}, split="train", cache_dir=cache_dir
            )
    elif Path(source).exists():
        raise UserError(f"{source}: not a folder of images nor a data set saved with save_to_disk")
    else:
        try:
            dataset = datasets.load_dataset(source, split=split, cache_dir=cache_dir)
        except Exception as error:  # offline, unknown name, no such split: one line, not the Hub's traceback
            raise UserError(
                f"{source}: not a local folder, and loading it from the Hugging Face Hub failed "
                f"({type(error).__name__}: {' '.join(str(error).split())[:300]})"
            ) from None
    dataset = select_columns(dataset, source=source, image_column=image_column, lr_column=lr_column)
    if lr_dataset is not None:
        dataset = pair_with_folder(dataset, lr_dataset, scale=scale)
    say_what_is_not_kept(dataset, label=source)  # training and prepare alike
    return dataset


def folder_images(folder):
    """(image files, other files) of a folder and its subfolders, both sorted. Only files with an image suffix
    (IMAGE_SUFFIXES) are training images; hidden files and folders (".DS_Store", "._x.png" resource forks, our own
    partial writes) and folders starting with "__" ("__MACOSX") never are. What other programs leave in a photo
    folder (metadata.jsonl, metadata.csv, Thumbs.db, .xmp sidecars) changes nothing that is trained."""
    folder = Path(folder)
    files, ignored = [], []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            relative = path.relative_to(folder)
            special = any(part.startswith((".", "__")) for part in relative.parts[:-1]) or name.startswith(".")
            if not special and path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                files.append(path)
            else:
                ignored.append(relative.as_posix())
    return files, ignored


SHOWN = 4


def say_ignored(folder, ignored):
    """One line naming what of a folder is not trained on (by the main process only, once)."""
    if not ignored or int(os.environ.get("RANK", "0")) != 0:
        return
    shown = ", ".join(ignored[:SHOWN]) + (f", ... ({len(ignored)} in all)" if len(ignored) > SHOWN else "")
    print(
        f"note: {folder}: {len(ignored)} file(s) that are not training images ignored ({shown}); metadata files "
        "of other programs select or label nothing here",
        file=sys.stderr,
    )


@contextmanager
def local_files_quietly():
    """No "Downloading data: 19 files" bars for a local folder: nothing is downloaded, the builder only indexes it."""
    was_enabled = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if was_enabled:
            datasets.enable_progress_bars()


def select_columns(dataset, *, source, image_column, lr_column):
    """Rename the HR (and LR) image columns to `hr` (and `lr`), drop the rest, and keep images undecoded."""
    image_columns = [name for name, feature in dataset.features.items() if isinstance(feature, datasets.Image)]

    def pick(name, default, role):
        if name is not None:
            if name not in dataset.column_names:
                raise UserError(f"{source}: no column {name!r} for the {role} images; columns: {dataset.column_names}")
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
            raise UserError(
                f"{source}: cannot tell which column holds the HR images (image columns: {found}); "
                "name it with --image-column"
            )
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


def pair_with_folder(dataset, lr_dir, *, scale):
    """Add an `lr` column: for each HR file, the LR file of the same stem in `lr_dir`."""
    if not Path(lr_dir).is_dir():
        raise ImageError(f"{lr_dir}: no such folder (--lr-dataset)")
    lr_paths = []
    for record in dataset["hr"]:
        if not record.get("path"):
            raise UserError("--lr-dataset pairs by file name, but these HR images have no file names")
        lr_paths.append(str(find_lr_file(lr_dir, Path(record["path"]).stem, scale)))
    return dataset.add_column("lr", lr_paths).cast_column("lr", datasets.Image(decode=False))
