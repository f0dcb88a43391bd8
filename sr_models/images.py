"""Reading and writing images: the one opener every command decodes through (issue 19, rule 2).

numpy and Pillow only: `export/upscale.py` uses this module on machines without PyTorch.

`open_image` is the only place that calls `Image.open` (tests/test_images.py checks it): an explicit list of
formats (ACCEPTED_FORMATS), so an EPS, PDF or GIF named `cat.png` is refused in one line and never reaches a
decoder that runs another program (Pillow hands EPS to Ghostscript); a zero size, a pixel mode without a defined
8-bit RGB mapping and a decoded size beyond the memory limit (sr_models.image_memory) are refused from the header,
before any pixel is decoded. What a file holds beyond 8-bit RGB is handled on purpose (`Header.kinds`):

    alpha (RGBA, LA, PA, palette tRNS)  upscale: upscaled beside the colour and written as RGBA (a format without
                                        alpha is refused); training and evaluation: the stored colour, alpha
                                        ignored (not composited), with one warning per kind (DecodeNotes)
    16-bit                              reduced to 8 bits (65535 -> 255; gray rounded, RGB keeps Pillow's high
                                        byte), everywhere, with a warning
    ICC profile                         upscale: an RGB profile is written to the output byte for byte, another
                                        (CMYK, gray) is applied, giving sRGB; training/evaluation: not applied
                                        (said unless it is sRGB, what untagged pixels are taken to be)
    several frames (APNG, animated      upscale: refused (it writes one image); training/evaluation: the first
    WEBP, TIFF pages)                   frame, with a warning

Every failure is an `ImageError` whose one-line message names the file and the problem.
"""

import io
import os
import sys
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from sr_models.errors import UserError
from sr_models.files import EXIF_SOFTWARE, IMAGE_MARK_SUFFIXES, WRITTEN_BY, atomic_write
from sr_models.image_memory import check_fits

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")

# What the toolkit reads. Never EPS/PS/PDF (Pillow runs Ghostscript on them) nor any format handed to another
# program; GIF, ICO, PSD ... are not among the suffixes we list, so a file of those kinds is refused too.
ACCEPTED_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP")

# Formats able to hold an alpha channel / an ICC profile, as Pillow writes them.
_ALPHA_FORMATS = ("PNG", "TIFF", "WEBP")
_ICC_FORMATS = ("PNG", "JPEG", "TIFF", "WEBP")

# Pillow's default JPEG quality (75) visibly smears the fine detail an SR model adds; WebP is lossy by default.
_SAVE_OPTIONS = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}

# 16-bit modes Pillow uses for 16-bit grayscale PNG/TIFF ("I" in older Pillow, "I;16*" in newer).
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")

# First bytes of formats people rename by mistake, to name what a refused file is.
_SIGNATURES = (
    (b"%!PS", "PostScript/EPS"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"%PDF", "PDF"),
    (b"GIF8", "GIF"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"8BPS", "PSD"),
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8", "JPEG"),
)


class ImageError(UserError):
    """An image file that cannot be read or written; the message names the file and the problem."""


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


def _kind_of(first_bytes):
    return next((kind for signature, kind in _SIGNATURES if first_bytes.startswith(signature)), None)


@dataclass
class Header:
    """What the header of an image file says, read without decoding its pixels."""

    name: str
    format: str
    width: int
    height: int
    mode: str
    frames: int
    alpha: bool
    sixteen_bit: bool  # 16 bits per sample stored (16-bit gray, 48/64-bit RGB/RGBA), whatever Pillow's mode
    icc: bytes = field(default=None, repr=False)

    @property
    def kinds(self):
        """The DECODE_KINDS this file has (what 8-bit RGB does not hold)."""
        return [
            kind
            for kind, present in (
                ("alpha", self.alpha),
                ("16-bit", self.sixteen_bit),
                ("icc", not _is_srgb(self.icc)),
                ("frames", self.frames > 1),
            )
            if present
        ]

    def decoded_bytes(self):
        """Upper bound of what decoding takes: Pillow's pixels (4 bytes a pixel for every multi-band mode, as Pillow
        stores them), its RGBA conversion, our RGB and alpha arrays."""
        per_pixel = 1 if self.mode in ("1", "L", "P") else 2 if self.mode in _SIXTEEN_BIT_MODES[:4] else 4
        return self.width * self.height * (per_pixel + 4 + 3 + 1)


def _stores_sixteen_bits(image):
    """16 bits per sample in the file: Pillow's 16-bit modes, or an 8-bit mode decoded from a 16-bit raw mode
    (a 48-bit RGB PNG is mode RGB, raw mode "RGB;16B": Pillow keeps the high byte)."""
    return image.mode in _SIXTEEN_BIT_MODES or any(";16" in str(tile.args) for tile in image.tile)


def _has_alpha(image):
    return image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info


@contextmanager
def open_image(source, *, name, max_memory=None):
    """THE opener: `source` (a path or bytes) opened as one of ACCEPTED_FORMATS, its header checked (size, mode,
    decoded memory against the limit), yielded undecoded as (Pillow image, Header)."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        size, stream = len(source), io.BytesIO(source)
    else:
        path = Path(source)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise ImageError(f"{name}: no such file") from None
        except OSError as error:
            raise ImageError(f"{name}: cannot read ({_one_line(error)})") from None
        if path.is_dir():
            raise ImageError(f"{name}: is a folder, not an image file")
        stream = path
    if size == 0:
        raise ImageError(f"{name}: empty file (0 bytes)")
    try:
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; a huge image is refused either way.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=ACCEPTED_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise ImageError(
            f"{name}: too many pixels to decode safely ({_one_line(error)}); "
            "raise PIL.Image.MAX_IMAGE_PIXELS if the file is trusted"
        ) from None
    except UnidentifiedImageError:
        kind = _kind_of(_first_bytes(source))
        if kind in ACCEPTED_FORMATS:
            raise ImageError(f"{name}: not an image Pillow can read (a damaged {kind} header)") from None
        what = f"a {kind} file" if kind else "not an image file"
        raise ImageError(
            f"{name}: {what}, not one of the accepted formats ({', '.join(ACCEPTED_FORMATS)}); it was not decoded"
        ) from None
    except PermissionError as error:
        raise ImageError(f"{name}: cannot read ({_one_line(error)})") from None
    except (OSError, SyntaxError, EOFError, ValueError, TypeError, KeyError) as error:
        raise ImageError(f"{name}: truncated or corrupt image data ({_one_line(error)})") from None
    with image:
        try:
            header = Header(
                name=name,
                format=image.format,
                width=image.size[0],
                height=image.size[1],
                mode=image.mode,
                frames=getattr(image, "n_frames", 1),
                alpha=_has_alpha(image),
                sixteen_bit=_stores_sixteen_bits(image),
                icc=image.info.get("icc_profile") or None,
            )
        except (OSError, SyntaxError, EOFError, ValueError) as error:
            raise ImageError(f"{name}: truncated or corrupt image data ({_one_line(error)})") from None
        if header.width == 0 or header.height == 0:
            raise ImageError(f"{name}: image has a zero dimension ({header.width}x{header.height})")
        check_mode(image, name)
        check_fits(
            header.decoded_bytes(),
            name=name,
            max_memory=max_memory,
            what=f"decoding this {header.width}x{header.height} {header.mode} image",
            change="use a smaller image, or a larger --max-memory where the command has one (upscale, "
            "evaluate) and the machine has the memory",
        )
        yield image, header


def _first_bytes(source):
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source[:8])
    try:
        with open(source, "rb") as file:
            return file.read(8)
    except OSError:
        return b""


def read_header(source, *, name, max_memory=None):
    """The Header of an image (source: a path or bytes), every header check done; no pixel decoded."""
    with open_image(source, name=name, max_memory=max_memory) as (_, header):
        return header


# Modes whose conversion to 8-bit RGB is defined (Pillow's, or ours for 16-bit). Anything else, e.g. 32-bit
# float ("F", a float TIFF whose values may be 0-1 or anything) or 32-bit integer data, has no agreed mapping to
# 8 bits: Pillow would clip it silently (a 0-1 float image turns black), so it is refused with its mode named.
_CONVERTIBLE_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV")


def check_mode(image, path):
    """ImageError naming the mode when a (not yet decoded) image's pixel format has no defined 8-bit RGB mapping;
    cheap, from the header, so a folder of such files is refused before training."""
    if image.mode not in _SIXTEEN_BIT_MODES and image.mode not in _CONVERTIBLE_MODES:
        raise ImageError(
            f"{path}: unsupported pixel mode {image.mode} (e.g. 32-bit float): no defined conversion "
            "to 8-bit RGB; save it as 8- or 16-bit RGB or grayscale"
        )


@dataclass
class Picture:
    """A decoded image: its colour, its alpha (None if it has none) and the ICC profile that describes `rgb`."""

    rgb: np.ndarray  # (H, W, 3) uint8
    alpha: np.ndarray  # (H, W) uint8, or None
    icc: bytes  # an RGB profile, or None
    header: Header


def decode_image(source, *, name, max_memory=None, apply_icc=False):
    """Decode an image (a path or bytes) through `open_image`: the first frame, EXIF orientation applied, 8-bit.

    apply_icc=True (upscale): a profile whose colour space is not RGB (CMYK, gray) is applied, giving sRGB
    pixels and no profile; an RGB profile is returned as is, to be written with the output."""
    with open_image(source, name=name, max_memory=max_memory) as (image, header):
        try:
            image.load()
            # Cameras store portrait photos sideways plus an orientation tag; apply it as viewers do.
            image = ImageOps.exif_transpose(image)
        except (OSError, SyntaxError, EOFError, ValueError) as error:
            raise ImageError(f"{name}: truncated or corrupt image data ({_one_line(error)})") from None
        rgb, alpha = _to_arrays(image, name)
        icc = header.icc
        if apply_icc and icc is not None and _icc_space(icc) != "RGB":
            rgb, icc = _apply_icc(image, rgb, icc, name), None
    return Picture(rgb=rgb, alpha=alpha, icc=icc, header=header)


def _to_arrays(image, name):
    """A loaded Pillow image of any accepted mode -> (HxWx3 uint8 RGB, HxW uint8 alpha or None)."""
    if image.mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image)
        if image.mode == "I" and values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageError(
                f"{name}: 32-bit integer pixels (mode I, values {values.min()} to {values.max()}): no "
                "defined 8-bit mapping; save it as 8- or 16-bit"
            )
        # 16-bit grayscale: 65535 / 257 = 255 maps full scale onto full scale; round to the nearest level.
        # (48-bit RGB PNG never gets here: Pillow decodes it to 8-bit itself, keeping the high byte.)
        gray = np.rint(np.clip(values.astype(np.float64), 0, 65535) / 257).astype(np.uint8)
        alpha = None
        if isinstance(image.info.get("transparency"), int):  # a tRNS colour key on 16-bit gray
            alpha = np.where(values == image.info["transparency"], 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2), alpha
    check_mode(image, name)
    try:
        if _has_alpha(image):
            # RGBA, LA, PA and tRNS (palette or colour key): the stored colour and its alpha, not composited.
            rgba = np.array(image.convert("RGBA"), dtype=np.uint8)
            return np.ascontiguousarray(rgba[:, :, :3]), np.ascontiguousarray(rgba[:, :, 3])
        # P, L, CMYK (Pillow's naive formula without a profile), YCbCr, 1: Pillow's RGB conversion.
        return np.array(image.convert("RGB") if image.mode != "RGB" else image, dtype=np.uint8), None
    except ValueError as error:
        raise ImageError(f"{name}: unsupported pixel mode {image.mode} ({_one_line(error)})") from None


def _is_srgb(icc):
    """True for no profile or an sRGB one: what an untagged image is taken to be, so not applying it changes
    nothing (the profile is still written with an upscaled image)."""
    if icc is None:
        return True
    try:
        return ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))).startswith("sRGB")
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return False


def _icc_space(icc):
    """The colour space an ICC profile describes ("RGB", "CMYK", "GRAY", ...), from its header (bytes 16-19)."""
    return icc[16:20].decode("ascii", "replace").strip()


_GRAY_MODES = ("1", "L", "LA", *_SIXTEEN_BIT_MODES)


def _apply_icc(image, rgb, icc, name):
    """The decoded colour `rgb` of the loaded Pillow `image`, converted from its (non-RGB) ICC profile to
    sRGB, as HxWx3 uint8. The profile is applied to the 8-bit values the toolkit decoded (16-bit gray already
    reduced, alpha already split off), never to Pillow's own conversion of the raw pixels."""
    space, mode = _icc_space(icc), image.mode
    if space == "GRAY" and mode in _GRAY_MODES:
        pixels = Image.fromarray(np.ascontiguousarray(rgb[:, :, 0]), "L")  # gray decodes to three equal channels
    elif space == "CMYK" and mode == "CMYK":
        pixels = image  # Pillow's RGB of CMYK is a naive formula: the profile goes on the stored inks
    else:
        raise ImageError(
            f"{name}: its ICC profile is for the {space!r} colour space, which this toolkit cannot "
            f"apply to {mode} pixels; convert the image to sRGB with its profile, or remove the "
            "profile"
        )
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        converted = ImageCms.profileToProfile(pixels, source, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError) as error:
        raise ImageError(f"{name}: cannot apply its {space} ICC profile ({_one_line(error)})") from None
    return np.array(converted, dtype=np.uint8)


def load_rgb(path, *, notes=None, max_memory=None):
    """Read an image file as an HxWx3 uint8 RGB array (EXIF orientation applied, 16-bit reduced to 8-bit, alpha
    ignored, first frame); `notes` (DecodeNotes) collects what was not kept, to be said once."""
    path = Path(path)
    picture = decode_image(path, name=str(path), max_memory=max_memory)
    if notes is not None:
        notes.add(picture.header)
    return picture.rgb


def output_format(path):
    """The Pillow format a suffix writes, or ImageError."""
    suffix = Path(path).suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ImageError(f"{path}: unknown image suffix {Path(path).suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
    return Image.registered_extensions()[suffix]


def check_output_holds(path, header, source):
    """ImageError when `path`'s format cannot hold what `header` (of input `source`) keeps: alpha or a profile."""
    image_format = output_format(path)
    if header.alpha and image_format not in _ALPHA_FORMATS:
        raise ImageError(
            f"{path}: {image_format} cannot hold the alpha channel of {source}; write .png, .tif or "
            ".webp (alpha is kept, never dropped)"
        )
    if header.icc is not None and _icc_space(header.icc) not in ("RGB", "CMYK", "GRAY"):
        raise ImageError(
            f"{source}: its ICC profile is for the {_icc_space(header.icc)!r} colour space, which "
            "upscaling cannot apply nor carry to an RGB output; convert the image to RGB first"
        )
    if header.icc is not None and _icc_space(header.icc) == "RGB" and image_format not in _ICC_FORMATS:
        raise ImageError(
            f"{path}: {image_format} cannot hold the ICC profile of {source}; write .png, .jpg, .tif "
            "or .webp (the profile is kept, never dropped)"
        )


def save_image(path, rgb, *, alpha=None, icc=None):
    """Write HxWx3 uint8 colour (with HxW alpha: RGBA; with `icc`: that profile); the suffix picks the format.
    Atomic (sr_models.files): complete or absent."""
    path = Path(path)
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ImageError(f"{path}: expected an HxWx3 uint8 array to save, got shape {rgb.shape} {rgb.dtype}")
    image_format = output_format(path)
    if alpha is not None:
        if image_format not in _ALPHA_FORMATS:
            raise ImageError(f"{path}: {image_format} cannot hold an alpha channel; write .png, .tif or .webp")
        if alpha.shape != rgb.shape[:2] or alpha.dtype != np.uint8:
            raise ImageError(f"{path}: alpha {alpha.shape} {alpha.dtype} does not match colour {rgb.shape}")
        image = Image.fromarray(np.dstack([rgb, alpha]))
    else:
        image = Image.fromarray(rgb)
    options = dict(_SAVE_OPTIONS.get(image_format, {}))
    if icc is not None:
        if image_format not in _ICC_FORMATS:
            raise ImageError(f"{path}: {image_format} cannot hold an ICC profile; write .png, .jpg, .tif or .webp")
        options["icc_profile"] = icc
    if path.suffix.lower() in IMAGE_MARK_SUFFIXES:  # our mark, so that a later --overwrite may replace it
        exif = Image.Exif()
        exif[EXIF_SOFTWARE] = WRITTEN_BY
        options["exif"] = exif
    atomic_write(path, lambda partial: image.save(partial, format=image_format, **options))


def save_rgb(path, array):
    """Write an HxWx3 uint8 array; the suffix picks the format. Atomic (sr_models.files): complete or absent.

    Marked as ours (EXIF Software: sr-toolkit, where the format has EXIF), so that --overwrite may replace it."""
    save_image(path, array)


# What training and evaluation do with each kind of content that 8-bit RGB does not hold; said once per kind.
DECODE_KINDS = {
    "alpha": "have alpha (RGBA, LA, PA or palette transparency): the stored colour is used, alpha ignored "
    "(not composited onto a background)",
    "16-bit": "are 16-bit: reduced to 8 bits (65535 -> 255)",
    "icc": "carry an ICC profile other than sRGB: the pixels are used as stored, the profile is not applied",
    "frames": "have several frames (animated or multi-page): only the first frame is used",
}


class DecodeNotes:
    """Files of each DECODE_KINDS kind among those read, to be said in one warning line per kind."""

    def __init__(self):
        self.files = {kind: [] for kind in DECODE_KINDS}

    def add(self, header):
        for kind in header.kinds:
            if header.name not in self.files[kind]:
                self.files[kind].append(header.name)

    def lines(self, label):
        return [
            f"warning: {label}: {len(names)} file(s) {DECODE_KINDS[kind]} (e.g. {names[0]})"
            for kind, names in self.files.items()
            if names
        ]

    def warn(self, label, stream=None):
        """Print the lines (main process only: every process of a run reads the same files)."""
        if int(os.environ.get("RANK", "0")) != 0:
            return
        for line in self.lines(label):
            print(line, file=stream or sys.stderr)


def list_images(folder):
    """The image files directly inside `folder` (suffix in IMAGE_SUFFIXES, any case), sorted by name."""
    folder = Path(folder)
    if not folder.exists():
        raise ImageError(f"{folder}: no such folder")
    if not folder.is_dir():
        raise ImageError(f"{folder}: not a folder")
    # Dot files are skipped: macOS "._name.png" resource forks and our own partial writes are not images.
    paths = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not paths:
        raise ImageError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return paths
