"""The decoded store: every HR image (mod-cropped) and its LR, decoded once into two flat uint8 files that every
training process and DataLoader worker maps read-only.

    python -m train.data prepare --dataset /data/DF2K_HR --output /data/DF2K_x4.store --scale 4 --store --num-proc 8
    accelerate launch ... train/run.py --recipe pan_x4_paper --dataset /data/DF2K_x4.store

A store is a folder:
    store.json  the index: format, version, scale, and per image its name and HR/LR (height, width)
    hr.u8       the HR images one after the other, each (height, width, 3) uint8 RGB, in index order
    lr.u8       the LR images likewise (the official LR files when given, else the MATLAB bicubic of the HR)

Why a plain memory map: the files are mapped with `numpy.memmap` (read-only, shared), so the page cache holds
one copy for all processes of the machine, whatever their number; a process's own memory grows by the page
tables only, not by the data (bench/train_speed.py measures it). Training decodes nothing: a patch is a slice of
the map. `--cache-images`, by contrast, decodes the whole data set in every process and keeps a private copy.
Patches stay a pure function of (seed, index): StorePairs is read by the same PatchDataset as any other source.

The files are written under a temporary folder name and renamed when complete, so a store folder is always
whole; opening one checks the index against the files' sizes and names the damaged file otherwise.
"""

import json
import multiprocessing
import os
import shutil
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sr_models.images import ImageError
from train.data.pairs import ImagePairs

FORMAT, VERSION = "sr-toolkit decoded store", 1
INDEX, HR_FILE, LR_FILE = "store.json", "hr.u8", "lr.u8"


def is_store(path):
    return (Path(path) / INDEX).is_file()


class StorePairs:
    """HR/LR uint8 image pairs of a decoded store, as ImagePairs gives them: (hr, lr) arrays, (H, W, 3)."""

    def __init__(self, path, *, scale, label=None):
        self.path = Path(path)
        self.label = label or str(path)
        self.paired = True
        index = read_index(self.path)
        if index["scale"] != scale:
            raise ImageError(f"{self.path / INDEX}: the store holds x{index['scale']} pairs, but the scale is {scale}")
        self.scale = scale
        self.names = [image["name"] for image in index["images"]]
        self.hr_shapes = [tuple(image["hr"]) + (3,) for image in index["images"]]
        self.lr_shapes = [tuple(image["lr"]) + (3,) for image in index["images"]]
        self.hr_offsets = offsets(self.hr_shapes)
        self.lr_offsets = offsets(self.lr_shapes)
        for name, offs in ((HR_FILE, self.hr_offsets), (LR_FILE, self.lr_offsets)):
            size = (self.path / name).stat().st_size if (self.path / name).is_file() else None
            if size != offs[-1]:
                found = "missing" if size is None else f"{size:,} bytes"
                raise ImageError(f"{self.path / name}: {found}, but {self.path / INDEX} lists {offs[-1]:,}: "
                                 "the store is damaged or incomplete; prepare it again")  # fmt: skip
        self.maps = None  # opened on first use in each process (a DataLoader worker maps the files itself)

    def __getstate__(self):  # pickled into spawned workers: the file names travel, never the mapped data
        return {**self.__dict__, "maps": None}

    def __len__(self):
        return len(self.names)

    def name(self, index):
        return f"{self.label}/{self.names[index]}"

    def lr_size(self, index):
        return self.lr_shapes[index][:2]

    def load(self, index):
        if self.maps is None:
            # mode "r": read-only and shared; an empty file cannot be mapped (a store of zero images has none).
            # Plain ndarray views: the memmap subclass would add its bookkeeping to every crop and flip.
            self.maps = tuple(np.memmap(self.path / name, dtype=np.uint8, mode="r").view(np.ndarray) if offs[-1]
                              else None for name, offs in ((HR_FILE, self.hr_offsets), (LR_FILE, self.lr_offsets)))  # fmt: skip
        hr_map, lr_map = self.maps
        hr = hr_map[self.hr_offsets[index] : self.hr_offsets[index + 1]].reshape(self.hr_shapes[index])
        lr = lr_map[self.lr_offsets[index] : self.lr_offsets[index + 1]].reshape(self.lr_shapes[index])
        return hr, lr


def offsets(shapes):
    """Byte offsets of consecutive uint8 arrays of these shapes, and the total at the end."""
    return np.concatenate([[0], np.cumsum([int(np.prod(shape)) for shape in shapes], dtype=np.int64)])


def read_index(path):
    index_path = path / INDEX
    try:
        index = json.loads(index_path.read_text())
        ok = index.get("format") == FORMAT and isinstance(index.get("images"), list)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError) as error:
        raise ImageError(f"{index_path}: not a readable store index ({' '.join(str(error).split())})") from None
    if not ok:
        raise ImageError(f"{index_path}: not a decoded store's index (no {FORMAT!r} format field)")
    if index.get("version") != VERSION:
        raise ImageError(f"{index_path}: store version {index.get('version')}, this toolkit reads {VERSION}; "
                         "prepare it again")  # fmt: skip
    return index


# ---- writing ------------------------------------------------------------------------------------------------


def write_store(dataset, output, *, scale, num_proc=1, skip_corrupt=False, label="dataset"):
    """Decode every image of a Dataset with `hr` [`lr`] columns (LR made by bicubic when absent) into a store.

    Returns (images written, images skipped as unreadable).
    """
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output}: already exists; remove it or choose another --output")
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted earlier attempt left
    partial.mkdir(parents=True)
    pairs = ImagePairs(dataset, scale=scale, label=label)
    # Sub-images (prepare_subimages) have no file but a name column: 0001_y240_x480
    names = dataset["name"] if "name" in dataset.column_names else [Path(pairs.name(i)).name for i in range(len(pairs))]
    images, skipped = [], 0
    with open(partial / HR_FILE, "wb") as hr_file, open(partial / LR_FILE, "wb") as lr_file:
        for index, pair in tqdm(decoded(pairs, num_proc), total=len(pairs), desc="decoding into the store"):
            if isinstance(pair, ImageError):
                if not skip_corrupt:
                    shutil.rmtree(partial, ignore_errors=True)
                    raise pair
                print(f"warning: skipped {pair}", file=sys.stderr)
                skipped += 1
                continue
            hr, lr = pair
            hr_file.write(np.ascontiguousarray(hr).data)
            lr_file.write(np.ascontiguousarray(lr).data)
            # The name only serves messages: where an image came from.
            images.append({"name": names[index], "hr": list(hr.shape[:2]), "lr": list(lr.shape[:2])})
        for f in (hr_file, lr_file):
            f.flush()
            os.fsync(f.fileno())
    index = {"format": FORMAT, "version": VERSION, "scale": scale, "source": label, "images": images}
    (partial / INDEX).write_text(json.dumps(index) + "\n")
    if output.exists():
        output.rmdir()  # empty (checked above)
    os.replace(partial, output)
    return len(images), skipped


_WORKER_PAIRS = None


def _start_worker(pairs):
    global _WORKER_PAIRS
    import torch

    torch.set_num_threads(1)  # one image per process already uses every core
    _WORKER_PAIRS = pairs


def load_or_error(pairs, index):
    try:
        return index, pairs.load(index)
    except ImageError as error:  # returned, not raised: the writer decides (skip_corrupt), in order
        return index, error


def _decode_one(index):
    return load_or_error(_WORKER_PAIRS, index)


def decoded(pairs, num_proc):
    """(index, (hr, lr) or the ImageError) for every image, in order, decoded by num_proc processes."""
    if num_proc <= 1:
        yield from (load_or_error(pairs, index) for index in range(len(pairs)))
        return
    # spawn, not fork: a process forked from one that already ran OpenMP threads can hang (libgomp).
    with multiprocessing.get_context("spawn").Pool(num_proc, initializer=_start_worker, initargs=(pairs,)) as pool:
        yield from pool.imap(_decode_one, range(len(pairs)))
