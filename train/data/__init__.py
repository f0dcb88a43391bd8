"""Training and validation data through Hugging Face `datasets`.

Where images come from (`--dataset`, and `--val-dataset` for validation):
    builtin               scikit-image's sample photographs, installed with scikit-image (no network): some for
                          training, others held out for validation (BUILTIN_TRAIN, BUILTIN_HELD_OUT)
    a folder of images    the `imagefolder` builder (its index is cached as Arrow in the datasets cache)
    a save_to_disk folder `datasets.load_from_disk` (a Dataset, or a DatasetDict and --split)
    a decoded store       `python -m train.data prepare --store`: decoded once, memory-mapped (store.py)
    anything else         a hub data set: `load_dataset(name, split=--split)`

Each source becomes a `datasets.Dataset` with an `hr` column and, for paired data, an `lr` column (from
`--lr-column`, or `--lr-dataset`: a folder of LR files matched by stem). Images are kept undecoded
(`Image(decode=False)`) and decoded here through `sr_models.images`, so a corrupt file is named in the error.
HR-only data gets its LR from the MATLAB-compatible bicubic (`sr_models.evaluation.resize`) of the whole mod-cropped
image.

Training samples are random aligned LR/HR patches with flips and 90-degree rotations. The sample at position i
of the run is a pure function of (seed, i): which image, where the patch is, which flips. So a run resumed at
step N (skipping N x batches) sees exactly the patches an uninterrupted run sees, with any number of workers.

Large images (DIV2K-size, 2K) are cut once into sub-images by `prepare_subimages` (`Dataset.map` cached to an
Arrow file), so that a training step never decodes a whole 2K PNG; `python -m train.data prepare` writes such a
prepared copy with `save_to_disk`.

Small-image rule: an image whose LR is smaller than the LR patch fails with an error naming it
(`small_images: error`, the default), is left out and counted (`skip`), or is mirror-padded at the bottom and
right, LR and HR alike so they stay aligned (`pad`).

One module per job: sources.py (where images come from), pairs.py (decoding, HR/LR pairs), patches.py (random
patches, the small-image rule), subimages.py (the prepare step and its command), store.py (the decoded store:
decoded once, memory-mapped by every process), training.py (putting it together), validation_sets.py (held-out
samples). The public names are importable from `train.data`.
"""

import sys

from sr_models.starting import stop_while_starting

if sys.argv[:1] == ["-m"]:  # `python -m train.data prepare`: runpy imports this package (seconds) before __main__
    stop_while_starting()

from sr_models.builtin import BUILTIN_HELD_OUT, BUILTIN_TRAIN, builtin_folder
from train.data.pairs import ImagePairs, decode, image_size, record_name
from train.data.patches import PatchDataset, small_image_error, usable_images
from train.data.sources import (
    builtin_dataset,
    is_saved_dataset,
    load_source,
    pair_with_folder,
    select_columns,
)
from train.data.store import StorePairs, is_store, write_store
from train.data.subimages import (
    SUBIMAGE_FEATURES,
    cut_subimages,
    prepare_subimages,
    subimage_starts,
)
from train.data.training import (
    check_enough_images,
    resolve_lr_mode,
    training_images,
    training_loader,
    training_patches,
)
from train.data.validation_sets import validation_samples, validation_sets

__all__ = [
    "BUILTIN_HELD_OUT",
    "BUILTIN_TRAIN",
    "SUBIMAGE_FEATURES",
    "ImagePairs",
    "PatchDataset",
    "StorePairs",
    "builtin_dataset",
    "builtin_folder",
    "check_enough_images",
    "resolve_lr_mode",
    "cut_subimages",
    "decode",
    "image_size",
    "is_saved_dataset",
    "is_store",
    "load_source",
    "pair_with_folder",
    "prepare_subimages",
    "record_name",
    "select_columns",
    "small_image_error",
    "subimage_starts",
    "training_images",
    "training_loader",
    "training_patches",
    "usable_images",
    "validation_samples",
    "validation_sets",
    "write_store",
]
