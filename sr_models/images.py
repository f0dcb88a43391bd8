"""Reading and writing images as HxWx3 uint8 RGB numpy arrays.

numpy and Pillow only: `export/upscale.py` uses this module on machines without PyTorch.

`load_rgb` follows the evaluation protocol (docs/evaluation.md, step 1): whatever the file holds, the result
is 8-bit RGB; a grayscale image is replicated to three channels and an alpha channel is dropped, as
`cv2.IMREAD_COLOR` does (no compositing onto a background). Every failure is an `ImageError` whose one-line
message names the file and the problem.
"""

import os
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

# Pillow's default JPEG quality (75) visibly smears the fine detail an SR model adds; WebP is lossy by default.
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}

# 16-bit modes Pillow uses for 16-bit grayscale PNG/TIFF ("I" in older Pillow, "I;16*" in newer).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


class ImageError(ValueError):
    """An image file that cannot be read or written; the message names the file and the problem."""


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _open_loaded(path):
    """Open `path` and decode every pixel now, so a truncated file fails here and not later."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except OSError as error:
        raise ImageError(f"{path}: cannot read ({_one_line(error)})") from None
    if path.is_dir():
        raise ImageError(f"{path}: is a folder, not an image file")
    if size == 0:
        raise ImageError(f"{path}: empty file (0 bytes)")
    try:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a huge image is refused either way.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width == 0 or height == 0:
                    raise ImageError(f"{path}: image has a zero dimension ({width}x{height})")
                image.load()
                # Cameras store portrait photos sideways plus an orientation tag; apply it as viewers do.
                return ImageOps.exif_transpose(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(
            f"{path}: too many pixels to decode safely ({_one_line(error)}); "
            "raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted"
        ) from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file Pillow can read") from None
    except PermissionError as error:
        raise ImageError(f"{path}: cannot read ({_one_line(error)})") from None
    except (OSError, SyntaxError, EOFError, ValueError) as error:
        raise ImageError(f"{path}: truncated or corrupt image data ({_one_line(error)})") from None


def _to_rgb_array(image, path):
    """A loaded Pillow image of any mode -> HxWx3 uint8 RGB."""
    if image.mode in _SIXTEEN_BIT_MODES:
        # 16-bit grayscale: 65535 / 257 = 255 maps full scale onto full scale; round to the nearest level.
        # (48-bit RGB PNG never gets here: Pillow decodes it to 8-bit itself, keeping the high byte.)
        values = np.asarray(image).astype(np.float64)
        gray = np.rint(np.clip(values, 0, 65535) / 257).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if image.mode != "RGB":
        try:
            # P/PA (with or without transparency), L, LA, RGBA, CMYK, YCbCr, 1: Pillow's RGB conversion keeps
            # the colour values and drops alpha, which is what cv2.IMREAD_COLOR does.
            image = image.convert("RGB")
        except ValueError as error:
            raise ImageError(f"{path}: unsupported pixel mode {image.mode} ({_one_line(error)})") from None
    return np.array(image, dtype=np.uint8)  # a writable copy, (H, W, 3)


def load_rgb(path):
    """Read an image file as an HxWx3 uint8 RGB array (EXIF orientation applied, 16-bit reduced to 8-bit)."""
    path = Path(path)
    return _to_rgb_array(_open_loaded(path), path)


def save_rgb(path, array):
    """Write an HxWx3 uint8 array; the suffix picks the format. Atomic: a crash never leaves a half file."""
    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageError(f"{path}: expected an HxWx3 uint8 array to save, got shape {array.shape} {array.dtype}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: unknown image suffix {path.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
    image_format = Image.registered_extensions()[suffix]
    # Same folder as the target so that os.replace is a rename on one file system; the dot hides it from
    # list_images and the .partial suffix keeps it from looking like an image.
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(partial, format=image_format, **_SAVE_OPTIONS.get(image_format, {}))
        os.replace(partial, path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ImageError(f"{path}: cannot write ({_one_line(error)})") from None


def list_images(folder):
    """The image files directly inside `folder` (suffix in IMAGE_SUFFIXES, any case), sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise ImageError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    # Dot files are skipped: macOS "._name.png" resource forks and our own partial writes are not images.
    paths = sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not paths:
        raise ImageError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths
