"""A held-out real-world test set: photos blurred, downscaled, noised and JPEG-compressed by other hands.

The degradation here is deliberately NOT train/degrade: it is a plain first-order chain written with scipy and
Pillow (Gaussian blur of the HR, a Pillow resize with a drawn filter, Gaussian noise, Pillow's JPEG encoder), so a
model trained with our pipeline is scored on degradations it did not generate itself. Each image's degradation is a
pure function of (seed, image position). Photos: Set5 (../shared) and the built-in held-out photographs; none is a
training image of the built-in set.

    python -m bench.realworld_set --out /tmp/rw          # writes /tmp/rw/HR and /tmp/rw/LR_bicubic/X4
    python train/evaluate.py --weights W --hr /tmp/rw    # scores W (and bicubic) on it
"""

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from sr_models.builtin import BUILTIN_HELD_OUT, builtin_folder
from sr_models.evaluation.metrics import mod_crop
from sr_models.images import load_rgb

SET5 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "Set5" / "HR"
# (low, high) of each draw: the family of the example (blur, downscale, noise, JPEG), one pass each.
BLUR_SIGMA = (0.5, 2.0)  # HR pixels; anisotropic half of the time
NOISE_SIGMA = (2.0, 12.0)  # 8-bit levels, colour noise
JPEG_QUALITY = (40, 85)
FILTERS = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "box": Image.BOX, "lanczos": Image.LANCZOS}


def photos():
    """[(name, HR uint8 array)] of the held-out photos present here (without Set5 a smaller set, said on stderr:
    its figures do not compare with those of the full set)."""
    found = [(p.stem, load_rgb(p)) for p in sorted(SET5.glob("*.png"))] if SET5.is_dir() else []
    if not found:
        print(f"warning: no Set5 at {SET5}: the set holds the built-in photos only", file=sys.stderr)
    return found + [(Path(n).stem, load_rgb(builtin_folder() / n)) for n in BUILTIN_HELD_OUT]


def degrade(hr, *, scale, rng):
    """The LR (uint8, exactly HR / scale) of one HR image and what was drawn."""
    sigma = rng.uniform(*BLUR_SIGMA, size=2) if rng.random() < 0.5 else np.full(2, rng.uniform(*BLUR_SIGMA))
    blurred = np.stack([gaussian_filter(hr[..., c].astype(np.float64), sigma, mode="reflect") for c in range(3)], -1)
    name = str(rng.choice(list(FILTERS)))
    small = Image.fromarray(np.clip(blurred.round(), 0, 255).astype(np.uint8))
    small = small.resize((hr.shape[1] // scale, hr.shape[0] // scale), FILTERS[name])
    noise_sigma = rng.uniform(*NOISE_SIGMA)
    noisy = np.asarray(small, np.float64) + rng.normal(0.0, noise_sigma, (small.height, small.width, 3))
    quality = int(rng.integers(JPEG_QUALITY[0], JPEG_QUALITY[1] + 1))
    encoded = io.BytesIO()
    Image.fromarray(np.clip(noisy.round(), 0, 255).astype(np.uint8)).save(encoded, format="JPEG", quality=quality)
    lr = np.asarray(Image.open(io.BytesIO(encoded.getvalue()), formats=["JPEG"]).convert("RGB"))
    drawn = {"blur_sigma": [round(float(s), 2) for s in sigma], "resize": name, "noise": round(noise_sigma, 2)}
    return lr, {**drawn, "jpeg": quality}


def write_set(out, *, scale=4, seed=2026):
    """Write out/HR/<name>.png (mod-cropped) and out/LR_bicubic/X<scale>/<name>x<scale>.png; the draws per image."""
    hr_dir, lr_dir = Path(out) / "HR", Path(out) / "LR_bicubic" / f"X{scale}"
    hr_dir.mkdir(parents=True, exist_ok=True)
    lr_dir.mkdir(parents=True, exist_ok=True)
    draws = {}
    for position, (name, hr) in enumerate(photos()):
        hr = mod_crop(hr, scale)
        lr, draws[name] = degrade(hr, scale=scale, rng=np.random.default_rng([seed, position]))
        Image.fromarray(hr).save(hr_dir / f"{name}.png")
        Image.fromarray(lr).save(lr_dir / f"{name}x{scale}.png")
    return draws


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder to write (benchmark layout)")
    parser.add_argument("--scale", type=int, default=4)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    for name, drawn in write_set(args.out, scale=args.scale, seed=args.seed).items():
        print(f"{name}: {drawn}")


if __name__ == "__main__":
    main()
