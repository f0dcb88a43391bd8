"""The built-in images: scikit-image's sample images, installed with scikit-image (no network).

Every list of them lives here, one job per image, so that the lists can be checked disjoint in one place
(tests/test_tiers.py) and no side imports another to learn what the other uses:
    training     BUILTIN_TRAIN: the default run's training photos; int8 also calibrates on them (export/content.py)
    held out     BUILTIN_HELD_OUT: validation of the default run, and the photos of export's default parity check
    int8         BUILTIN_CALIBRATION_GRAPHICS calibrate, BUILTIN_PARITY_GRAPHICS check parity (export/content.py)
    reporting    BUILTIN_REPORTING_PHOTOS: int8 figures only (bench/held_out.py), never calibrated or checked on
"""

from pathlib import Path

# scikit-image's photographs (skimage/data), colour and grayscale. Held out: a portrait, an animal and a still
# life, three colour photographs of scenes the training set does not show (the motorcycle stereo pair stays
# together on the training side: one of the two would be a near-copy of the other).
BUILTIN_TRAIN = (
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "camera.png",
    "brick.png",
    "grass.png",
    "gravel.png",
    "coins.png",
    "moon.png",
)
BUILTIN_HELD_OUT = ("astronaut.png", "chelsea.png", "coffee.png")

# Text/graphics for int8 (docs/int8.md): a scanned page, a silhouette, a logo, a chessboard and a colour wheel
# calibrate; a photograph of handwriting and the Shepp-Logan phantom (line art) check parity.
BUILTIN_CALIBRATION_GRAPHICS = ("page.png", "horse.png", "logo.png", "chessboard_RGB.png", "color.png")
BUILTIN_PARITY_GRAPHICS = ("text.png", "phantom.png")

# The one built-in photograph no list above uses: int8 is reported on it, beside Set5 and drawn graphics.
BUILTIN_REPORTING_PHOTOS = ("clock_motion.png",)


def builtin_folder():
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"
