"""Held-out images for reporting int8 figures: never calibrated on, never used by the parity check.

Text/graphics are drawn here with Pillow at run time (nothing committed): slides, screenshots, line art, charts
and flat-shaded cartoons, each a pure function of (kind, seed), so every run and every machine with the same
Pillow draws the same pixels. Photos: Set5 (../shared, when present) and scikit-image's `clock_motion.png`, the one
built-in photograph that no other list of the project uses (sr_models/builtin.py keeps the lists disjoint).

HR is drawn at HR_SIZE; LR is MATLAB bicubic of HR (as the training and parity data are made), so an image is a
ParityImage like any other and export.parity.check_parity scores it.
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from export.parity import ParityImage, load_parity_images, photos_as_pairs
from sr_models.builtin import BUILTIN_REPORTING_PHOTOS, builtin_folder
from sr_models.evaluation.samples import sample_from_hr

HR_SIZE = (320, 240)  # (w, h): LR 80x60 at x4, a screen-sized crop that PAN upscales in well under a second
KINDS = ("slide", "screenshot", "line_art", "chart", "cartoon")
WORDS = (
    "model",
    "upscale",
    "quarterly",
    "results",
    "latency",
    "export",
    "image",
    "pixel",
    "quantized",
    "budget",
    "training",
    "overview",
    "summary",
    "network",
    "colour",
    "Figure",
    "Table",
    "next",
    "steps",
    "data",
)
SET5 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Set5"


def font(size):
    return ImageFont.load_default(size=size)  # Pillow's bundled TrueType font: present wherever Pillow is


def words(rng, count):
    return " ".join(str(rng.choice(WORDS)) for _ in range(count))


def colour(rng, low=0, high=256):
    return tuple(int(v) for v in rng.integers(low, high, 3))


def slide(draw, rng, w, h):
    """A presentation slide: coloured title bar, bullet points in two sizes, a boxed footnote."""
    draw.rectangle([0, 0, w, h], fill=colour(rng, 225))
    draw.rectangle([0, 0, w, 44], fill=colour(rng, 0, 120))
    draw.text((12, 8), words(rng, 3).title(), fill="white", font=font(int(rng.integers(22, 30))))
    y = 58
    for _ in range(int(rng.integers(4, 7))):
        size = int(rng.integers(11, 19))
        draw.ellipse([14, y + size // 3, 20, y + size // 3 + 6], fill=colour(rng, 0, 100))
        draw.text((28, y), words(rng, int(rng.integers(3, 6))), fill=colour(rng, 0, 70), font=font(size))
        y += size + 10
    draw.rectangle([w - 110, h - 34, w - 10, h - 10], outline=colour(rng, 0, 100), width=2)
    draw.text((w - 104, h - 30), words(rng, 2), fill="black", font=font(11))


def screenshot(draw, rng, w, h):
    """A desktop window: title bar with buttons, a menu, small UI text, input fields, a selected row."""
    draw.rectangle([0, 0, w, h], fill=(236, 236, 236))
    draw.rectangle([0, 0, w, 22], fill=colour(rng, 40, 110))
    draw.text((8, 5), words(rng, 2), fill="white", font=font(12))
    for index, fill in enumerate(((237, 106, 94), (245, 191, 79), (98, 197, 84))):
        draw.ellipse([w - 60 + 17 * index, 6, w - 50 + 17 * index, 16], fill=fill)
    draw.text((8, 27), "File  Edit  View  Help", fill="black", font=font(10))
    for row in range(int(rng.integers(5, 9))):
        y = 46 + 20 * row
        if row == 2:
            draw.rectangle([4, y - 2, w - 4, y + 15], fill=colour(rng, 60, 140))
        draw.text((10, y), words(rng, 4), fill="white" if row == 2 else "black", font=font(int(rng.integers(9, 13))))
    draw.rectangle([w - 120, h - 30, w - 12, h - 8], fill="white", outline=(120, 120, 120))
    draw.text((w - 114, h - 26), "OK", fill="black", font=font(12))


def line_art(draw, rng, w, h):
    """Black strokes of 1-3 px on white: polylines, circles, arcs, hatching (a pen drawing or a schematic)."""
    draw.rectangle([0, 0, w, h], fill="white")
    for _ in range(int(rng.integers(6, 12))):
        points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(2, 5)))]
        draw.line(points, fill="black", width=int(rng.integers(1, 4)))
    for _ in range(int(rng.integers(2, 5))):
        x, y, r = int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20)), int(rng.integers(8, 50))
        draw.ellipse([x - r, y - r, x + r, y + r], outline="black", width=int(rng.integers(1, 3)))
    x0 = int(rng.integers(0, w - 80))
    for step in range(0, 60, 5):  # hatching: fine parallel lines, the hardest case for a quantized upscaler
        draw.line([(x0 + step, h - 10), (x0 + step + 20, h - 70)], fill="black", width=1)


def chart(draw, rng, w, h):
    """A bar chart with axes, grid, tick labels and a line series."""
    draw.rectangle([0, 0, w, h], fill="white")
    left, bottom = 36, h - 26
    for y in range(30, bottom, 30):
        draw.line([(left, y), (w - 8, y)], fill=(215, 215, 215))
        draw.text((4, y - 6), str(bottom - y), fill="black", font=font(10))
    draw.line([(left, 12), (left, bottom), (w - 8, bottom)], fill="black", width=2)
    bars = int(rng.integers(5, 9))
    step = (w - left - 16) // bars
    for index in range(bars):
        top = int(rng.integers(30, bottom - 10))
        x = left + 6 + index * step
        draw.rectangle([x, top, x + step - 8, bottom - 1], fill=colour(rng, 0, 220))
        draw.text((x, bottom + 6), f"Q{index + 1}", fill="black", font=font(10))
    points = [(left + 6 + i * step + step // 2, int(rng.integers(20, bottom - 20))) for i in range(bars)]
    draw.line(points, fill=(200, 20, 20), width=2)
    draw.text((w // 2 - 40, 2), words(rng, 2), fill="black", font=font(13))


def cartoon(draw, rng, w, h):
    """Flat colour regions with dark outlines (anime/cel shading, icons): sky, ground, shapes, a face."""
    draw.rectangle([0, 0, w, h // 2], fill=colour(rng, 150))
    draw.rectangle([0, h // 2, w, h], fill=colour(rng, 60, 200))
    for _ in range(int(rng.integers(3, 6))):
        x, y, r = int(rng.integers(0, w)), int(rng.integers(0, h)), int(rng.integers(15, 60))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x - r, y - r, x + r, y + r], fill=colour(rng), outline=(30, 20, 20), width=int(rng.integers(2, 4)))
    x, y = int(rng.integers(60, w - 60)), int(rng.integers(60, h - 60))
    draw.ellipse([x - 45, y - 45, x + 45, y + 45], fill=(255, 224, 196), outline=(40, 20, 20), width=3)
    for dx in (-18, 18):
        draw.ellipse([x + dx - 7, y - 14, x + dx + 7, y + 4], fill="white", outline="black", width=2)
        draw.ellipse([x + dx - 3, y - 8, x + dx + 3, y], fill=colour(rng, 0, 120))
    draw.arc([x - 20, y, x + 20, y + 28], 20, 160, fill=(120, 20, 30), width=3)


DRAW = {"slide": slide, "screenshot": screenshot, "line_art": line_art, "chart": chart, "cartoon": cartoon}


def synthetic_image(kind, seed, *, size=HR_SIZE):
    """(h, w, 3) uint8 HR image of one kind, a pure function of (kind, seed)."""
    image = Image.new("RGB", size)
    DRAW[kind](ImageDraw.Draw(image), np.random.default_rng([KINDS.index(kind), seed]), *size)
    return np.asarray(image)


def synthetic_graphics(*, scale, seeds=(0, 1)):
    """Drawn text/graphics images as ParityImages (LR = MATLAB bicubic of HR), every kind for every seed."""
    pairs = []
    for kind in KINDS:
        for seed in seeds:
            sample = sample_from_hr(f"{kind}-{seed}", synthetic_image(kind, seed), scale)
            pairs.append(ParityImage(sample.name, sample.lr, sample.hr))
    return pairs


def held_out_photos(*, scale):
    """Set5 (official LR) when ../shared is present, and the built-in photos no other list uses."""
    photos = load_parity_images(SET5, scale=scale) if SET5.is_dir() else []
    return photos + photos_as_pairs([builtin_folder() / name for name in BUILTIN_REPORTING_PHOTOS], scale=scale)
