"""Decoding undecoded image records, and HR/LR image pairs of a data set (through sr_models.images' opener)."""

from sr_models.evaluation.metrics import mod_crop
from sr_models.evaluation.resize import downscale_image
from sr_models.images import DecodeNotes, ImageError, decode_image, read_header


def record_name(record, fallback):
    return record.get("path") or fallback


def _source(record, name):
    if record is None:
        raise ImageError(f"{name}: no image in this row")
    if record.get("bytes"):
        return record["bytes"]
    if record.get("path"):
        return record["path"]
    raise ImageError(f"{name}: row has neither image bytes nor a file path")


def decode(record, *, name):
    """An undecoded image record {"bytes", "path"} as HxWx3 uint8 RGB; ImageError naming `name` otherwise."""
    return decode_image(_source(record, name), name=name).rgb


def header(record, *, name):
    """The Header of a record (sr_models.images.read_header): size, mode, alpha, ICC, frames; nothing decoded."""
    return read_header(_source(record, name), name=name)


def say_what_is_not_kept(dataset, *, label):
    """One warning line per kind of content 8-bit RGB does not hold (alpha, 16-bit, ICC, frames) among the
    images of a Dataset's `hr` [`lr`] columns, from their headers. Unreadable files are left to the checks that
    name them (usable_images, --skip-corrupt)."""
    notes = DecodeNotes()
    for column in [c for c in ("hr", "lr") if c in dataset.column_names]:
        for index, record in enumerate(dataset[column]):
            try:
                notes.add(header(record, name=record_name(record or {}, f"{label}[{index}]")))
            except ImageError:
                pass
    notes.warn(label)


def image_size(record, *, name):
    """(width, height) from the image header only: cheap enough to check every image before training."""
    found = header(record, name=name)
    return found.width, found.height


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
                raise ImageError(
                    f"{lr_name}: LR is {width}x{height}, but its HR {hr_name} mod-cropped is "
                    f"{hr_width - hr_width % s}x{hr_height - hr_height % s}, not {s} times that"
                )
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
            raise ImageError(
                f"{lr_name}: LR is {lr.shape[1]}x{lr.shape[0]}, but its HR {hr_name} mod-cropped is "
                f"{hr.shape[1]}x{hr.shape[0]}, not {self.scale} times that"
            )
        return hr, lr

    def cache_all(self, indices):
        """Decode the images once (and make their LR) and keep them in memory."""
        self.cache = {i: self.load(i) for i in indices}
