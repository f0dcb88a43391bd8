"""`--init-weights PATH`: start a run from existing weights (fine-tuning).

Only the weights come from the file: the optimizer, the learning-rate schedule and the step counter start fresh
(that is what tells it apart from `--resume`). PATH is one of our safetensors files or a foreign checkpoint that
sr_models.weights imports (the PAN authors' `.pth`, BasicSR files).

Strict (the default): the file must hold exactly this model, every tensor by name and shape, and the same
architecture and scale (PAN x2 and x3 have identical tensors, so for our files the scale in the metadata is
checked too). `--init-strict false` loads every tensor whose name and shape fit and says what it left out and
what starts fresh, e.g. a PAN x2 model from x4 weights: the trunk and first U-PA stage load, the second stage of
x4 is left out. A file that holds another architecture is refused either way.
"""

from pathlib import Path

from sr_models.weights import (
    WeightsError,
    architecture_name,
    checkpoint_spec,
    load_matching,
    load_state_dict_strict,
    read_state_dict,
)

SHOWN = 6  # names listed on the console; the log has them all


def init_weights(model, path, *, strict=True):
    """Load the weights of `path` into `model` (just built). Returns a summary for the log and the console."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such file (--init-weights)")
    if strict:
        name, scale = model.spec["name"], model.spec["scale"]
        try:
            checkpoint_spec(path, name=name, scale=scale)  # architecture and scale, ours or foreign alike
            load_state_dict_strict(model, read_state_dict(path), source=path)
        except WeightsError as error:
            raise WeightsError(
                f"{error} (--init-weights is strict; --init-strict false loads the tensors that "
                "fit and starts the rest fresh)"
            ) from None
        return {
            "init_weights": str(path),
            "init_strict": True,
            "loaded": len(model.state_dict()),
            "left_out": [],
            "fresh": [],
        }
    held = architecture_name(path)
    if held not in (None, model.spec["name"]):  # not strict means another scale or width, not another network
        raise WeightsError(
            f"{path}: holds a {held} model, not {model.spec['name']} (--init-weights, also with --init-strict false)"
        )
    loaded, left_out, fresh = load_matching(model, read_state_dict(path), source=path)
    if not loaded:
        raise WeightsError(f"{path}: no tensor fits {model.spec} by name and shape (--init-weights)")
    return {
        "init_weights": str(path),
        "init_strict": False,
        "loaded": len(loaded),
        "left_out": left_out,
        "fresh": fresh,
    }


def describe(summary):
    """One console line (two when tensors were left out): what was loaded, left out and starts fresh."""
    line = f"initial weights: {summary['init_weights']} ({summary['loaded']} tensors loaded"
    line += ", strict)" if summary["init_strict"] else ", non-strict)"
    for label, names in (("left out", summary["left_out"]), ("starting fresh", summary["fresh"])):
        if names:
            shown = ", ".join(names[:SHOWN]) + (f" ... ({len(names)} in all)" if len(names) > SHOWN else "")
            line += f"\n  {label}: {shown}"
    return line
