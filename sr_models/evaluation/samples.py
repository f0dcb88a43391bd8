"""Samples of the protocol: benchmark folders, and the one way an HR image becomes an (LR, HR) pair.

Evaluation, validation, export parity and the benchmarks all read folders and make LR here, so every figure they
report rests on the same mod-crop and the same MATLAB-compatible bicubic. Layouts:
    a benchmark root     HR/ and, optionally, LR_bicubic/X<scale>/ (the EDSR/BasicSR layout of Set5, Set14, ...)
    an HR folder         with an LR folder given separately, or none (LR then made by the MATLAB-compatible bicubic)
"""

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sr_models.evaluation.metrics import mod_crop
from sr_models.images import IMAGE_SUFFIXES, DecodeNotes, ImageError, list_images, load_rgb


@dataclass
class Sample:
    name: str
    lr: np.ndarray  # (h, w, 3) uint8
    hr: np.ndarray  # (h*scale, w*scale, 3) uint8, mod-cropped
    source: Path | None = None  # the file the LR comes from (given, or made from this HR), named in errors


def sample_from_hr(name, hr, scale, *, source=None):
    """An HR image as a Sample: mod-cropped to a multiple of `scale` (a view), LR made by MATLAB bicubic of that.

    `source` (the file, when there is one) is what an error names; an image smaller than the scale is refused.
    """
    from sr_models.evaluation.resize import downscale_image  # deferred: reading folders needs no torch

    hr = mod_crop(hr, scale)
    if hr.size == 0:
        raise ImageError(f"{source or name}: smaller than the scale {scale}: not one LR pixel")
    return Sample(name, downscale_image(hr, scale), hr, source=source)


@functools.lru_cache(maxsize=8)
def _images_by_stem(folder, mtime_ns):
    """{stem: path} of a folder's image files, first by sorted name; cached per folder state (pairing DIV2K's 800
    files would otherwise list the folder 800 times)."""
    by_stem = {}
    for path in sorted(Path(folder).iterdir()):
        if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file() and not path.name.startswith("."):
            by_stem.setdefault(path.stem, path)
    return by_stem


def find_lr_file(lr_dir, stem, scale):
    """The LR file of an HR image: `<stem>x<scale>.<ext>` (EDSR/BasicSR benchmark layout) or `<stem>.<ext>`.

    Names are compared literally (never as glob patterns): `img[1].png` pairs with `img[1]x4.png`, not `img1x4.png`.
    """
    lr_dir = Path(lr_dir)
    if not lr_dir.is_dir():
        raise ImageError(f"{lr_dir}: no such folder (LR images)")
    by_stem = _images_by_stem(str(lr_dir), lr_dir.stat().st_mtime_ns)
    for name in (f"{stem}x{scale}", stem):
        if name in by_stem:
            return by_stem[name]
    raise ImageError(f"{lr_dir}: no LR image for {stem!r} (looked for {stem}x{scale}.* and {stem}.*)")


def load_benchmark(hr_dir, *, scale, lr_dir=None, max_memory=None):
    """HR images of a folder with their LR: matched by file stem in `lr_dir`, or made by MATLAB bicubic."""
    samples, notes = [], DecodeNotes()
    for hr_path in list_images(hr_dir):
        hr = mod_crop(load_rgb(hr_path, notes=notes, max_memory=max_memory), scale)
        if hr.size == 0:
            raise ImageError(f"{hr_path}: smaller than the scale {scale}: not one LR pixel")
        if lr_dir is None:
            samples.append(sample_from_hr(hr_path.stem, hr, scale, source=hr_path))  # hr already cropped: a no-op
            continue
        lr_path = find_lr_file(lr_dir, hr_path.stem, scale)
        lr = load_rgb(lr_path, notes=notes, max_memory=max_memory)
        if (lr.shape[0] * scale, lr.shape[1] * scale) != hr.shape[:2]:
            raise ImageError(
                f"{lr_path}: LR is {lr.shape[1]}x{lr.shape[0]}, but {hr_path.name} mod-cropped is "
                f"{hr.shape[1]}x{hr.shape[0]}, not {scale} times that"
            )
        samples.append(Sample(hr_path.stem, lr, hr, source=lr_path))
    notes.warn(hr_dir)  # alpha, 16-bit, ICC, frames: one line per kind, the same rule as training's
    return samples


def is_benchmark_root(folder):
    return Path(folder, "HR").is_dir()


def load_benchmark_root(folder, *, scale, max_memory=None):
    """A benchmark root (HR/ + LR_bicubic/X<scale>/): the official LR files where present, else bicubic LR."""
    lr_dir = Path(folder, "LR_bicubic", f"X{scale}")
    return load_benchmark(
        Path(folder, "HR"), scale=scale, lr_dir=lr_dir if lr_dir.is_dir() else None, max_memory=max_memory
    )
