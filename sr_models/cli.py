"""The command-line options several commands share (train/evaluate.py, export/to_onnx.py, export/upscale.py): each
defined once, so that a weights file, a model, a scale, a device or an overwrite is asked for alike everywhere.
Each command keeps its own help text where what the option means differs between them.

Nothing heavy is imported here: export/upscale.py runs without torch, and the model names are read from the
registry (which imports the models) only when --model is added.
"""

from pathlib import Path


def add_weights_argument(parser, *, help):
    """--weights PATH (required)."""
    parser.add_argument("--weights", required=True, type=Path, help=help)


def add_model_arguments(parser):
    """--model and --scale: what a foreign checkpoint (a .pth, which names neither) holds. The valid models are
    the registry's (sr_models.registry.list_models) at the time of the call."""
    from sr_models.registry import list_models  # deferred: imports the models, and torch with them

    # Not argparse choices: an unknown name is the toolkit's one-line error (exit 1), as every other bad option.
    parser.add_argument(
        "--model",
        help=f"architecture of a foreign checkpoint: {', '.join(list_models())} (checked against its tensors)",
    )
    parser.add_argument("--scale", type=int, help="upscaling factor (needed for PAN x2/x3 .pth files)")


def add_device_argument(parser, *, help):
    """--device NAME, default auto (each command resolves it: PyTorch's or onnxruntime's devices)."""
    parser.add_argument("--device", default="auto", help=help)


def add_overwrite_argument(parser, *, help):
    """--overwrite: replace what the command would write where a file already is (sr_models.files.claim_output)."""
    parser.add_argument("--overwrite", action="store_true", help=help)
