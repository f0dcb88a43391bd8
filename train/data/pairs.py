"""Decoding undecoded image records, and HR/LR image pairs of a data set."""

import io
import warnings

from PIL import Image, ImageOps

from sr_models.images import ImageError, _to_rgb_array, check_mode, load_rgb
from sr_models.metrics import mod_crop
from sr_models.resize import downscale_image


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
                check_mode(image, name)
                return image.size
    except ImageError:
        raise
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
