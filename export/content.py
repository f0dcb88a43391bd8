"""Which built-in images calibrate int8 and which check parity: photographs and text/graphics, kept disjoint.

All are scikit-image's sample images (installed with it, no network), listed in sr_models/builtin.py with every
other list of them, so the lists are checked disjoint in one place. Each image has one job:
    calibration  photos: the training side's built-in photos (sr_models.builtin.BUILTIN_TRAIN)
                 text/graphics: a scanned page, a silhouette, a logo, a chessboard, a colour wheel
                 (BUILTIN_CALIBRATION_GRAPHICS)
    parity       photos: the training side's held-out photos (sr_models.builtin.BUILTIN_HELD_OUT)
                 text/graphics: a photograph of handwriting and the Shepp-Logan phantom (BUILTIN_PARITY_GRAPHICS)
    reporting    nothing here: bench/held_out.py reports on Set5, `clock_motion.png` and drawn text/graphics
Photos alone calibrate ranges that flat colours and hard black/white edges do not fit: on the PAN authors' x4
weights a colour wheel lost 3.5 dB and a cartoon 1.4 dB that way (docs/int8.md).
"""

from sr_models.builtin import (
    BUILTIN_CALIBRATION_GRAPHICS,
    BUILTIN_HELD_OUT,
    BUILTIN_PARITY_GRAPHICS,
    BUILTIN_TRAIN,
    builtin_folder,
)


def builtin_images(job, kind):
    """Paths of the built-in images with a job ("calibration" or "parity") and a kind ("photo" or "graphics")."""
    names = {
        ("calibration", "photo"): BUILTIN_TRAIN,
        ("calibration", "graphics"): BUILTIN_CALIBRATION_GRAPHICS,
        ("parity", "photo"): BUILTIN_HELD_OUT,
        ("parity", "graphics"): BUILTIN_PARITY_GRAPHICS,
    }[job, kind]
    return [builtin_folder() / name for name in names]


def default_calibration(*, scale):
    """LR images (h, w, 3) uint8 that calibrate int8 by default: both kinds, LR by MATLAB bicubic of each image."""
    from export.parity import photos_as_pairs

    paths = builtin_images("calibration", "photo") + builtin_images("calibration", "graphics")
    return [image.lr for image in photos_as_pairs(paths, scale=scale)]
