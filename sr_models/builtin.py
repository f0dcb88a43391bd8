"""The built-in photographs: scikit-image's sample images, installed with scikit-image (no network).

Some are training images of the default run, others are held out: the training side validates on them and the
export's parity check runs on them by default. Both sides read the lists here, so neither imports the other.
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


def builtin_folder():
    import skimage

    return Path(skimage.__file__).resolve().parent / "data"
