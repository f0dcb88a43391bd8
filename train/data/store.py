"""The decoded store: every HR image (mod-cropped) and its LR, decoded once into two flat uint8 files that every
training process and DataLoader worker maps read-only.

    python -m train.data prepare --dataset /data/DF2K_HR --output /data/DF2K_x4.store --scale 4 --store --num-proc 8
    accelerate launch ... train/run.py --recipe pan_x4_paper --dataset /data/DF2K_x4.store

A store is a folder:
    store.json  the index: format, version, scale, dtype, channels, and per image its name, HR/LR (height, width),
                the byte offset of each in its file and the SHA-256 of each image's bytes
    hr.u8       the HR images one after the other, each (height, width, 3) uint8 RGB, in index order
    lr.u8       the LR images likewise (the official LR files when given, else the MATLAB bicubic of the HR)

Why a plain memory map: the files are mapped with `numpy.memmap` (read-only, shared), so the page cache holds
one copy for all processes of the machine, whatever their number; a process's own memory grows by the page
tables only, not by the data (bench/train_speed.py measures it). Training decodes nothing: a patch is a slice of
the map. `--cache-images`, by contrast, decodes the whole data set in every process and keeps a private copy.
Patches stay a pure function of (seed, index): StorePairs is read by the same PatchDataset as any other source.

The files are written under a temporary folder name and renamed when complete, so a store folder is always
whole. Opening one validates the index's structure (`check_index`: every HR exactly scale times its LR, offsets
contiguous, in order and within the files, the files' sizes); each image's bytes are checked against their
SHA-256 the first time a process reads that image, so damage inside the data (a flipped byte) is named instead of
trained on, at the cost of hashing each image once per process (about 0.75 GB/s, docs/gpu-and-data-store.md).
"""

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from sr_models.errors import UserError
from sr_models.images import ImageError
from train.data.pairs import ImagePairs

FORMAT, VERSION = "sr-toolkit decoded store", 2  # 2: offsets and a SHA-256 per image
INDEX, HR_FILE, LR_FILE = "store.json", "hr.u8", "lr.u8"


def is_store(path):
    return (Path(path) / INDEX).is_file()


class StorePairs:
    """HR/LR uint8 image pairs of a decoded store, as ImagePairs gives them: (hr, lr) arrays, (H, W, 3)."""

    def __init__(self, path, *, scale, label=None):
        self.path = Path(path)
        self.label = label or str(path)
        index = read_index(self.path)
        # LR images of its own (ImagePairs.paired), unless the index says they are the bicubic of each HR
        self.paired = index.get("lr_source") != "bicubic"
        if index["scale"] != scale:
            raise ImageError(f"{self.path / INDEX}: the store holds x{index['scale']} pairs, but the scale is {scale}")
        self.scale = scale
        images = index["images"]
        self.names = [image["name"] for image in images]
        self.hr_shapes = [tuple(image["hr"]) + (3,) for image in images]
        self.lr_shapes = [tuple(image["lr"]) + (3,) for image in images]
        self.hr_offsets = offsets(self.hr_shapes)
        self.lr_offsets = offsets(self.lr_shapes)
        self.digests = [(image["hr_sha256"], image["lr_sha256"]) for image in images]
        self.verified = set()  # images whose bytes this process has checked against their digests
        self.maps = None  # opened on first use in each process (a DataLoader worker maps the files itself)

    def __getstate__(self):  # pickled into spawned workers: the file names travel, never the mapped data
        return {**self.__dict__, "maps": None, "verified": set()}

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
            self.maps = tuple(
                np.memmap(self.path / name, dtype=np.uint8, mode="r").view(np.ndarray) if offs[-1] else None
                for name, offs in ((HR_FILE, self.hr_offsets), (LR_FILE, self.lr_offsets))
            )
        hr_map, lr_map = self.maps
        hr = hr_map[self.hr_offsets[index] : self.hr_offsets[index + 1]].reshape(self.hr_shapes[index])
        lr = lr_map[self.lr_offsets[index] : self.lr_offsets[index + 1]].reshape(self.lr_shapes[index])
        if index not in self.verified:
            for file, array, expected in ((HR_FILE, hr, self.digests[index][0]), (LR_FILE, lr, self.digests[index][1])):
                if image_digest(array) != expected:
                    raise ImageError(
                        f"{self.path / file}: image {index} ({self.names[index]}): its bytes do not match "
                        f"the SHA-256 in {self.path / INDEX}: the store is damaged; prepare it again"
                    )
            self.verified.add(index)
        return hr, lr


def image_digest(array):
    """SHA-256 of an image's shape and bytes: an index whose sizes were swapped (same byte count, another shape)
    fails it as a flipped byte does."""
    digest = hashlib.sha256("x".join(map(str, array.shape)).encode() + b"|")
    digest.update(array.data)
    return digest.hexdigest()


def offsets(shapes):
    """Byte offsets of consecutive uint8 arrays of these shapes, and the total at the end."""
    return np.concatenate([[0], np.cumsum([int(np.prod(shape)) for shape in shapes], dtype=np.int64)])


def read_index(path):
    index_path = path / INDEX
    try:
        index = json.loads(index_path.read_text())
        ok = index.get("format") == FORMAT and isinstance(index.get("images"), list)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, RecursionError) as error:
        raise ImageError(f"{index_path}: not a readable store index ({' '.join(str(error).split())})") from None
    if not ok:
        raise ImageError(f"{index_path}: not a decoded store's index (no {FORMAT!r} format field)")
    if index.get("version") != VERSION:
        raise ImageError(
            f"{index_path}: store version {index.get('version')}, this toolkit reads {VERSION} (with a "
            "checksum per image); prepare it again"
        )
    check_index(index, path)
    return index


_SHA256 = re.compile("[0-9a-f]{64}")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_size(value):
    return isinstance(value, list) and len(value) == 2 and all(_is_int(v) and v > 0 for v in value)


def check_index(index, path):
    """ImageError naming the store file and the entry unless the index describes the files exactly: every image an
    HR of exactly scale x its LR (both mod-cropped at prepare time, as ImagePairs crops), each image's bytes at the
    offset that follows the previous image's (in order, no overlap, no gap), the files' sizes the sum, uint8 RGB,
    a SHA-256 per image. Totals alone would let an edited index train on misaligned pairs."""
    index_path = path / INDEX
    scale = index.get("scale")
    if not _is_int(scale) or scale < 1:
        raise ImageError(f"{index_path}: scale {scale!r} is not a positive integer")
    if index.get("dtype") != "uint8" or index.get("channels") != 3:
        raise ImageError(
            f"{index_path}: dtype {index.get('dtype')!r} and channels {index.get('channels')!r}; a store "
            "holds uint8 RGB (3 channels)"
        )
    ends = {"hr": 0, "lr": 0}
    for number, image in enumerate(index["images"]):
        where = f"{index_path}: image {number}"
        if not isinstance(image, dict):
            raise ImageError(f"{where}: not an entry (a mapping), but {type(image).__name__}")
        if isinstance(image.get("name"), str):
            where = f"{where} ({image['name']})"
        missing = [
            key for key in ("name", "hr", "lr", "hr_offset", "lr_offset", "hr_sha256", "lr_sha256") if key not in image
        ]
        if missing:
            raise ImageError(f"{where}: lacks {', '.join(missing)}")
        if not isinstance(image["name"], str):
            raise ImageError(f"{where}: the name is not a string")
        for role in ("hr", "lr"):
            if not _is_size(image[role]):
                raise ImageError(f"{where}: {role} size {image[role]!r} is not [height, width] of positive integers")
            digest = image[f"{role}_sha256"]
            if not (isinstance(digest, str) and _SHA256.fullmatch(digest)):
                raise ImageError(f"{where}: {role}_sha256 {digest!r} is not a SHA-256 hex digest")
        (hr_h, hr_w), (lr_h, lr_w) = image["hr"], image["lr"]
        if (hr_h, hr_w) != (lr_h * scale, lr_w * scale):
            raise ImageError(
                f"{where}: HR {hr_w}x{hr_h} is not {scale} x its LR {lr_w}x{lr_h}: the pair would be "
                "misaligned; the index was edited or damaged, prepare the store again"
            )
        for role in ("hr", "lr"):
            offset = image[f"{role}_offset"]
            if offset != ends[role] or not _is_int(offset):
                overlap = _is_int(offset) and offset < ends[role]
                how = "overlaps the previous image" if overlap else "is not where the previous image ends"
                raise ImageError(
                    f"{where}: {role}_offset {offset!r} {how} ({ends[role]:,}): the index was edited or "
                    "damaged; prepare the store again"
                )
            height, width = image[role]
            ends[role] += height * width * 3
    for role, name in (("hr", HR_FILE), ("lr", LR_FILE)):
        file = path / name
        size = file.stat().st_size if file.is_file() else None
        if size != ends[role]:
            found = "missing" if size is None else f"{size:,} bytes"
            raise ImageError(
                f"{file}: {found}, but {index_path} lists {ends[role]:,} (the last image would end "
                "outside the file, or bytes are unaccounted for): the store is damaged or incomplete; "
                "prepare it again"
            )


# ---- writing ------------------------------------------------------------------------------------------------


def write_store(dataset, output, *, scale, num_proc=1, skip_corrupt=False, label="dataset"):
    """Decode every image of a Dataset with `hr` [`lr`] columns (LR made by bicubic when absent) into a store.

    Returns (images written, images skipped as unreadable).
    """
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"{output}: already exists; remove it or choose another --output")
    partial = output.with_name(output.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)  # what an interrupted earlier attempt left
    partial.mkdir(parents=True)
    try:  # an error, an interrupt or a full disk leaves no partial store (rule 4)
        written, skipped = _write_into(
            dataset, partial, scale=scale, num_proc=num_proc, skip_corrupt=skip_corrupt, label=label
        )
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if output.exists():
        output.rmdir()  # empty (checked above)
    os.replace(partial, output)
    return written, skipped


def _write_into(dataset, partial, *, scale, num_proc, skip_corrupt, label):
    pairs = ImagePairs(dataset, scale=scale, label=label)
    # Sub-images (prepare_subimages) have no file but a name column: 0001_y240_x480
    names = dataset["name"] if "name" in dataset.column_names else [Path(pairs.name(i)).name for i in range(len(pairs))]
    images, skipped = [], 0
    with open(partial / HR_FILE, "wb") as hr_file, open(partial / LR_FILE, "wb") as lr_file:
        for index, pair in tqdm(decoded(pairs, num_proc), total=len(pairs), desc="decoding into the store"):
            if isinstance(pair, ImageError):
                if not skip_corrupt:
                    raise pair
                print(f"warning: skipped {pair}", file=sys.stderr)
                skipped += 1
                continue
            hr, lr = (np.ascontiguousarray(a) for a in pair)
            # The name only serves messages: where an image came from.
            entry = {"name": names[index], "hr": list(hr.shape[:2]), "lr": list(lr.shape[:2])}
            for role, array, f in (("hr", hr, hr_file), ("lr", lr, lr_file)):
                entry[f"{role}_offset"] = f.tell()
                entry[f"{role}_sha256"] = image_digest(array)
                f.write(array.data)
            images.append(entry)
        for f in (hr_file, lr_file):
            f.flush()
            os.fsync(f.fileno())
    index = {
        "format": FORMAT,
        "version": VERSION,
        "scale": scale,
        "dtype": "uint8",
        "channels": 3,
        "source": label,
        # Where the LR images came from: the data set's own (pairs), or the MATLAB bicubic of each HR. lr_mode
        # bicubic and degrade use a "bicubic" store; a "pairs" store (or one older than this field) is paired data.
        "lr_source": "pairs" if pairs.paired else "bicubic",
        "images": images,
    }
    (partial / INDEX).write_text(json.dumps(index) + "\n")
    return len(images), skipped


_WORKER_PAIRS = None


def _start_worker(pairs):
    global _WORKER_PAIRS
    import torch

    # A terminal's Ctrl-C or hang-up reaches the whole group: the main process stops the pool and cleans up. SIGTERM
    # keeps its default: Pool.terminate() ends the workers with it, and a worker ignoring it is joined forever.
    # (Workers start with them ignored already, terminal_signals_ignored_by_new_processes; a worker the pool starts
    # later to replace one gets it here, after its imports.)
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_IGN)
    torch.set_num_threads(1)  # one image per process already uses every core
    _WORKER_PAIRS = pairs


def load_or_error(pairs, index):
    try:
        return index, pairs.load(index)
    except ImageError as error:  # returned, not raised: the writer decides (skip_corrupt), in order
        return index, error


def _decode_one(index):
    return load_or_error(_WORKER_PAIRS, index)


@contextlib.contextmanager
def terminal_signals_ignored_by_new_processes():
    """Processes spawned inside (the pool's workers, multiprocessing's resource tracker) ignore Ctrl-C and hang-ups
    from their first instruction, as an ignored signal stays ignored across exec: set in the initializer only, a
    Ctrl-C to the group during a worker's seconds of imports was a KeyboardInterrupt traceback per worker, and a
    hang-up killed the resource tracker ("process died unexpectedly, relaunching" and KeyError tracebacks). The
    command's own handlers come back at once; a signal in those milliseconds of starting processes is lost."""
    numbers = (signal.SIGINT, signal.SIGHUP)
    try:
        previous = {number: signal.signal(number, signal.SIG_IGN) for number in numbers}
    except ValueError:  # not the main thread: signals are the main thread's to set
        previous = {}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def decoded(pairs, num_proc):
    """(index, (hr, lr) or the ImageError) for every image, in order, decoded by num_proc processes."""
    if num_proc <= 1:
        yield from (load_or_error(pairs, index) for index in range(len(pairs)))
        return
    # spawn, not fork: a process forked from one that already ran OpenMP threads can hang (libgomp).
    with terminal_signals_ignored_by_new_processes():
        pool = multiprocessing.get_context("spawn").Pool(num_proc, initializer=_start_worker, initargs=(pairs,))
    with pool:
        yield from pool.imap(_decode_one, range(len(pairs)))
        # Done: every worker takes its end-of-work sentinel and exits. (Leaving `with` alone terminates the pool, which
        # drains the queue and may take a worker's sentinel from under it; that stays for errors and signals.)
        pool.close()
        pool.join()
