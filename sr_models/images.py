"""Reading and writing images as HxWx3 uint8 RGB numpy arrays.

numpy and Pillow only: `export/upscale.py` uses this module on machines without PyTorch.

`load_rgb` follows the evaluation protocol (docs/evaluation.md, step 1): whatever the file holds, the result
is 8-bit RGB; a grayscale image is replicated to three channels and an alpha channel is dropped, as
`cv2.IMREAD_COLOR` does (no compositing onto a background). Every failure is an `ImageError` whose one-line
message names the file and the problem.
"""

import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sr_models.files import EXIF_SOFTWARE, IMAGE_MARK_SUFFIXES, WRITTEN_BY, atomic_write

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


# Modes whose conversion to 8-bit RGB is defined (Pillow's, or ours for 16-bit). Anything else, e.g. 32-bit
# float ("F", a float TIFF whose values may be 0-1 or anything) or 32-bit integer data, has no agreed mapping to
# 8 bits: Pillow would clip it silently (a 0-1 float image turns black), so it is refused with its mode named.
_CONVERTIBLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV")


def check_mode(image, path):
    """ImageError naming the mode when a (not yet decoded) image's pixel format has no defined 8-bit RGB mapping;
    cheap, from the header, so a folder of such files is refused before training."""
    if image.mode not in _SIXTEEN_BIT_MODES and image.mode not in _CONVERTIBLE_MODES:
        raise ImageError(f"{path}: unsupported pixel mode {image.mode} (e.g. 32-bit float): no defined conversion "
                         "to 8-bit RGB; save it as 8- or 16-bit RGB or grayscale")  # fmt: skip


def _to_rgb_array(image, path):
    """A loaded Pillow image of any mode -> HxWx3 uint8 RGB, or ImageError naming the mode."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(f"{path}: 32-bit integer pixels (mode I, values {values.min()} to {values.max()}): no "
                             "defined 8-bit mapping; save it as 8- or 16-bit")  # fmt: skip
        # 16-bit grayscale: 65535 / 257 = 255 maps full scale onto full scale; round to the nearest level.
        # (48-bit RGB PNG never gets here: Pillow decodes it to 8-bit itself, keeping the high byte.)
        gray = np.rint(np.clip(values.astype(np.float64), 0, 65535) / 257).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    check_mode(image, path)
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
    """Write an HxWx3 uint8 array; the suffix picks the format. Atomic (sr_models.files): complete or absent.

    Marked as ours (EXIF Software: sr-toolkit, where the format has EXIF), so that --overwrite may replace it."""
    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ImageError(f"{path}: expected an HxWx3 uint8 array to save, got shape {array.shape} {array.dtype}")
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: unknown image suffix {path.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
    image_format = Image.registered_extensions()[suffix]
    options = dict(_SAVE_OPTIONS.get(image_format, {}))
    if suffix in IMAGE_MARK_SUFFIXES:
        exif = Image.Exif()
        exif[EXIF_SOFTWARE] = WRITTEN_BY
        options["exif"] = exif
    atomic_write(path, lambda partial: Image.fromarray(array).save(partial, format=image_format, **options))


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
