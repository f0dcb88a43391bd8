"""Upscale images with an exported model: onnxruntime, numpy, Pillow and tqdm only (no PyTorch needed).

    python export/upscale.py MODEL.onnx photo.jpg photo_x4.png
    python export/upscale.py MODEL.onnx photos/ upscaled/          # every image of the folder
    sr-upscale MODEL.onnx photo.jpg photo_x4.png                    # the same, as the installed console script
    python export/upscale.py MODEL.onnx photo.jpg out.png --self-ensemble   # mean of 8 flips/rotations, 8x time

Images open through sr_models.images' one opener (PNG, JPEG, BMP, TIFF, WEBP; EXIF orientation applied,
grayscale replicated to RGB). What 8-bit RGB does not hold is kept on purpose: alpha (RGBA, LA, PA, palette
transparency) is upscaled beside the colour with Pillow's bicubic and written as RGBA (an output format without
alpha, JPEG or BMP, is refused); an RGB ICC profile is written to the output byte for byte, a CMYK or gray one is
applied (sRGB out); 16-bit is reduced to 8 bits (said); a file of several frames is refused. The output format
follows the output suffix (a folder keeps each input's name). Large images run in overlapping tiles (--tile,
--tile-pad); the memory of each image (decoding, the whole output, the model on one tile or the whole image) is
estimated from its header before anything is allocated and refused beyond --max-memory or the machine's available
memory. CUDA is used when onnxruntime has it.
"""

from sr_models.starting import stop_while_starting

if __name__ == "__main__":  # before the imports below (seconds); writer_command's handlers take over in main
    stop_while_starting()

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from export.runtime import DEFAULT_TILE_PAD, TILE_OUTPUT_PIXELS, OnnxUpscaler
from sr_models.cli import add_device_argument, add_overwrite_argument
from sr_models.errors import user_errors
from sr_models.files import claim_output, interrupted, writer_command
from sr_models.image_memory import (
    ACTIVATION_BYTES_PER_OUTPUT_PIXEL,
    DEFAULT_MAX_MEMORY,
    check_fits,
    gib,
    memory_limit,
    parse_memory,
)
from sr_models.images import (
    IMAGE_SUFFIXES,
    ImageError,
    check_output_holds,
    decode_image,
    list_images,
    read_header,
    save_image,
)


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
            raise ImageError(
                f"{target}: unknown image suffix {target.suffix!r} (use one of {', '.join(IMAGE_SUFFIXES)})"
            )
        jobs = [(source, target)]
    for image, output in jobs:
        claim_output(output, inputs=[*inputs, image], overwrite=overwrite, lock=not source.is_dir(), writes="image")
    return jobs


def upscale_memory(header, *, scale, tile, tile_pad, graph_memory=lambda height, width: (0, None)):
    """(bytes, what they are) one image takes in this command: decoding, the whole output (colour and alpha,
    and Pillow's copy when it is saved), and the model's activations on one tile (or the whole image): the
    estimate for an SR network, or more where the graph itself is known to allocate more (`graph_memory`:
    OnnxUpscaler.graph_memory, a tiny file that resizes by 4096 asks terabytes)."""
    output_pixels = header.width * header.height * scale * scale
    output = output_pixels * ((3 + 1 + 1 + 4 + 4) if header.alpha else (3 + 3))
    side_h, side_w = (
        (min(tile + 2 * tile_pad, header.height), min(tile + 2 * tile_pad, header.width))
        if tile
        else (header.height, header.width)
    )
    where = f"tiles of {tile}" if tile else "the whole image at once (--tile 0)"
    run = side_h * side_w * scale * scale * ACTIVATION_BYTES_PER_OUTPUT_PIXEL
    known, op = graph_memory(side_h, side_w)
    if known > run:
        run, where = known, f"{where} (its graph's {op} output alone)"
    decoding = header.decoded_bytes()
    return decoding + output + run, (
        f"decoding {gib(decoding)}, the {header.width * scale}x{header.height * scale}"
        f" output {gib(output)}, the model on {where} {gib(run)}"
    )


def check_inputs(jobs, *, scale, tile, tile_pad, max_memory, graph_memory=lambda height, width: (0, None)):
    """Every input's header, checked before the first image is run: one image per file, an output format that
    holds what it keeps (alpha, ICC profile), and the memory it needs (refused with the size and the option)."""
    for source, target in jobs:
        header = read_header(source, name=str(source), max_memory=max_memory)
        if header.frames > 1:
            raise ImageError(
                f"{source}: has {header.frames} frames (animated or multi-page); upscale.py writes one "
                "image per file: save the frame to upscale as its own file"
            )
        check_output_holds(target, header, source)
        need, parts = upscale_memory(header, scale=scale, tile=tile, tile_pad=tile_pad, graph_memory=graph_memory)
        change = (
            "tile it (--tile 256) or pass a larger --max-memory if the machine has it"
            if not tile
            else "pass a larger --max-memory if the machine has it (tiles bound only the model's share)"
        )
        check_fits(need, name=str(source), what=f"upscaling x{scale} ({parts})", max_memory=max_memory, change=change)


def upscale_alpha(alpha, scale):
    """An (h, w) uint8 alpha upscaled to (h*scale, w*scale) with Pillow's bicubic: the model is trained on
    colour photographs, not on masks, so its output on an alpha channel is not what it was made for."""
    height, width = alpha.shape
    return np.asarray(Image.fromarray(alpha).resize((width * scale, height * scale), Image.Resampling.BICUBIC))


def upscale_file(upscaler, source, target, *, max_memory=None):
    """Read, upscale and write one image, keeping its alpha and ICC profile; returns the warnings to print."""
    picture = decode_image(source, name=str(source), max_memory=max_memory, apply_icc=True)
    sr = upscaler(picture.rgb, image=source)
    alpha = None if picture.alpha is None else upscale_alpha(picture.alpha, upscaler.scale)
    save_image(target, sr, alpha=alpha, icc=picture.icc)
    warnings = []
    if picture.header.sixteen_bit:
        warnings.append(f"warning: {source}: 16-bit: reduced to 8 bits (65535 -> 255); {target} is 8-bit")
    if picture.header.icc is not None and picture.icc is None:
        warnings.append(f"note: {source}: its ICC profile was applied; {target} holds sRGB pixels")
    return warnings


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="an .onnx file written by export/to_onnx.py")
    parser.add_argument("input", type=Path, help="an image file or a folder of images")
    parser.add_argument("output", type=Path, help="an image file (suffix picks the format) or a folder")
    add_device_argument(parser, help="auto (CUDA when available), cpu, cuda or cuda:N")
    parser.add_argument(
        "--tile",
        type=int,
        help=f"tile size in input pixels, 0: whole image at once "
        f"(default: {TILE_OUTPUT_PIXELS} / scale, e.g. 256 for x4)",
    )
    parser.add_argument(
        "--tile-pad",
        type=int,
        default=DEFAULT_TILE_PAD,
        help=f"context pixels around each tile (default {DEFAULT_TILE_PAD})",
    )
    parser.add_argument(
        "--self-ensemble",
        action="store_true",
        help="average the 8 flips/rotations of each tile (EDSR's x8 self-ensemble: 8x the time)",
    )
    add_overwrite_argument(parser, help="replace output files that already exist")
    parser.add_argument(
        "--max-memory",
        type=memory_argument,
        default=DEFAULT_MAX_MEMORY,
        help="memory one image may take, e.g. 8G (default 4G; never more than MemAvailable)",
    )
    args = parser.parse_args(argv)
    if args.tile is not None and not 0 <= args.tile <= 65536:
        parser.error(f"--tile {args.tile}: must be 0 (whole image) or a tile side of at most 65536 input pixels")
    if not 0 <= args.tile_pad <= 1024:
        parser.error(f"--tile-pad {args.tile_pad}: must be in 0..1024")
    return args


def memory_argument(text):
    try:
        return parse_memory(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


@writer_command
def main(argv=None):
    with user_errors():  # ImageError, OnnxModelError, OutputError, bad options: one line, exit 1
        upscale_command(parse_args(argv))


def upscale_command(args):
    written = 0
    try:
        jobs = plan(args.input, args.output, model=args.model, overwrite=args.overwrite)
        tile = "auto" if args.tile is None else args.tile
        upscaler = OnnxUpscaler(
            args.model,
            device=args.device,
            tile=tile,
            tile_pad=args.tile_pad,
            progress=True,
            self_ensemble=args.self_ensemble,
            memory_limit=memory_limit(args.max_memory)[0],
        )
        check_inputs(
            jobs,
            scale=upscaler.scale,
            tile=upscaler.tile,
            tile_pad=args.tile_pad,
            max_memory=args.max_memory,
            graph_memory=upscaler.graph_memory,
        )
        for source, target in tqdm(jobs, desc=f"upscaling x{upscaler.scale}", unit="image", disable=len(jobs) == 1):
            for line in upscale_file(upscaler, source, target, max_memory=args.max_memory):
                tqdm.write(line, file=sys.stderr)
            written += 1
            if upscaler.suspect:
                tqdm.write(f"warning: {source}: {upscaler.suspect.describe()}", file=sys.stderr)
    except KeyboardInterrupt:  # each image is written whole or not at all (sr_models.files)
        interrupted(f"{written} image(s) written, no partial file left")
    print(f"wrote {jobs[0][1] if len(jobs) == 1 else f'{len(jobs)} images to {args.output}'} (x{upscaler.scale})")


if __name__ == "__main__":
    main()
