"""Upscale images with an exported model: onnxruntime, numpy, Pillow and tqdm only (no PyTorch needed).

    python export/upscale.py MODEL.onnx photo.jpg photo_x4.png
    python export/upscale.py MODEL.onnx photos/ upscaled/          # every image of the folder
    sr-upscale MODEL.onnx photo.jpg photo_x4.png                    # the same, as the installed console script
    python export/upscale.py MODEL.onnx photo.jpg out.png --self-ensemble   # mean of 8 flips/rotations, 8x time

Images are read as the training side reads them (EXIF orientation applied, grayscale replicated to RGB, alpha
dropped); the output format follows the output suffix (a folder keeps each input's name). Large images run in
overlapping tiles, so memory stays bounded (--tile, --tile-pad). CUDA is used when onnxruntime has it.
"""

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from export.runtime import DEFAULT_TILE_PAD, TILE_OUTPUT_PIXELS, OnnxModelError, OnnxUpscaler
from sr_models.files import claim_output, interrupted, writer_command
from sr_models.images import IMAGE_SUFFIXES, ImageError, list_images, load_rgb, save_rgb


def plan(source, target, *, model=None, overwrite=False):
    """[(input file, output file)] for a file -> file, file -> folder or folder -> folder call.

    Every output is claimed before any image is run (sr_models.files.claim_output: never an input, replaced only
    if ours and with `overwrite`, held against a second command writing it).
    """
    source, target = Path(source), Path(target)
    inputs = [p for p in (model, source) if p is not None]
    if source.is_dir():
        claim_output(target, inputs=inputs, kind="folder")
        jobs = [(path, target / path.name) for path in list_images(source)]
    elif not source.exists():
        raise ImageError(f"{source}: no such file or folder")
    elif target.is_dir() or (not target.suffix and not target.exists()):
        jobs = [(source, target / source.name)]
    else:
        if target.suffix.lower() not in IMAGE_SUFFIXES:
            raise ImageError(f"{target}: unknown image suffix {target.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})")
        jobs = [(source, target)]
    for image, output in jobs:
        claim_output(output, inputs=[*inputs, image], overwrite=overwrite, lock=not source.is_dir())
    return jobs


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an .onnx file written by export/to_onnx.py")
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("output", type=Path, help="an image file (suffix picks the format) or a folder")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument("--tile", type=int, help=f"tile size in input pixels, 0: whole image at once "
                        f"(default: {TILE_OUTPUT_PIXELS} / scale, e.g. 256 for x4)")  # fmt: skip
    parser.add_argument("--tile-pad", type=int, default=DEFAULT_TILE_PAD,
                        help=f"context pixels around each tile (default {DEFAULT_TILE_PAD})")  # fmt: skip
    parser.add_argument("--self-ensemble", action="store_true",
                        help="average the 8 flips/rotations of each tile (EDSR's x8 self-ensemble: 8x the time)")  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    args = parser.parse_args(argv)
    if args.tile is not None and not 0 <= args.tile <= 65536:
        parser.error(f"--tile {args.tile}: must be 0 (whole image) or a tile side of at most 65536 input pixels")
    if not 0 <= args.tile_pad <= 1024:
        parser.error(f"--tile-pad {args.tile_pad}: must be in 0..1024")
    return args


@writer_command
def main(argv=None):
    args = parse_args(argv)
    written = 0
    try:
        jobs = plan(args.input, args.output, model=args.model, overwrite=args.overwrite)
        tile = "auto" if args.tile is None else args.tile
        upscaler = OnnxUpscaler(args.model, device=args.device, tile=tile, tile_pad=args.tile_pad, progress=True,
                                self_ensemble=args.self_ensemble)
        for source, target in tqdm(jobs, desc=f"upscaling x{upscaler.scale}", unit="image", disable=len(jobs) == 1):
            save_rgb(target, upscaler(load_rgb(source)))
            written += 1
            if upscaler.suspect:
                tqdm.write(f"warning: {source}: {upscaler.suspect.describe()}", file=sys.stderr)
    except (ImageError, OnnxModelError, ValueError) as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:  # each image is written whole or not at all (sr_models.files)
        interrupted(f"{written} image(s) written, no partial file left")
    print(f"wrote {jobs[0][1] if len(jobs) == 1 else f'{len(jobs)} images to {args.output}'} (x{upscaler.scale})")


if __name__ == "__main__":
    main()
