"""The training configuration: one typed dataclass, YAML recipes, `--key value` overrides.

    # recipe `quickstart` (the default): PAN x4 on the built-in photos
    accelerate launch train/run.py
    # your own folder of photos, validated on Set5
    accelerate launch train/run.py --recipe pan_x4_report --dataset my_photos --val-dataset ../shared/data/Set5
    # fine-tune existing weights (ours or the PAN authors' .pth)
    accelerate launch train/run.py --recipe pan_x4_report --dataset my_photos --init-weights PANx4_DF2K.pth --lr 1e-4
    accelerate launch train/run.py --recipe my_recipe.yaml --lr 5e-4 --model-overrides '{channels: 32}'

A recipe is a YAML mapping of field names to values (train/recipes/*.yaml, or any file path). Command-line
overrides come after the recipe; `--batch-size` and `--batch_size` are the same key. Unknown keys and values of
the wrong type fail with one line naming the key, the value and what was expected (the recipe file too).
"""

import argparse
import difflib
import math
import sys
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import yaml

from sr_models.errors import UserError
from sr_models.files import atomic_write_text
from sr_models.registry import check_spec, list_models
from train.losses import LOSSES
from train.optim import OPTIMIZERS, SCHEDULERS

RECIPES = Path(__file__).resolve().parent / "recipes"


class ConfigError(UserError):
    """A configuration that cannot be used; the message names the key (and file) and the problem."""


def option(default, help):
    """A config field with its help text (shown by --help). Mutable defaults are copied per instance."""
    if isinstance(default, (dict, list)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # --- model ---
    model: str = option("pan", f"architecture: {', '.join(list_models())} (sr_models/archs)")
    scale: int = option(4, "upscaling factor")
    model_overrides: dict = option({}, "model hyper-parameters, e.g. {channels: 8, num_blocks: 1}")
    sync_batchnorm: bool = option(False, "SyncBatchNorm across processes (SRResNet on several GPUs)")
    channels_last: bool = option(False, "NHWC memory format for model and batches")
    compile: bool = option(False, "torch.compile the model (through Accelerate's dynamo plugin)")
    init_weights: typing.Optional[str] = option(
        None,
        "start from these weights (fine-tuning): our .safetensors or "
        "a foreign .pth; optimizer, schedule and step start fresh",
    )
    init_strict: bool = option(
        True,
        "--init-weights must fit the model exactly; false: load the tensors whose "
        "name and shape fit, the rest starts fresh",
    )

    # --- data ---
    dataset: str = option("builtin", "builtin | folder of images | save_to_disk folder | decoded store | hub name")
    split: str = option("train", "split of a save_to_disk DatasetDict or hub data set")
    image_column: typing.Optional[str] = option(None, "HR image column (default: 'hr', else the only Image column)")
    lr_column: typing.Optional[str] = option(None, "LR image column of paired data (default: 'lr' if present)")
    lr_dataset: typing.Optional[str] = option(None, "folder of LR images matched to HR by file stem (paired data)")
    lr_mode: str = option(
        "auto",
        "how each LR patch is made: bicubic (MATLAB bicubic of the HR) | degrade (real-world degradations drawn per "
        "patch in the feed step, docs/degradations.md) | paired (the data set's own LR images) | auto (paired when "
        "the data has LR images, else bicubic)",
    )
    degradations: dict = option(
        {},
        "lr_mode degrade: the pipeline's probabilities and ranges, e.g. {noise_range: [1, 15], bicubic_share: 0.2}; "
        "unset keys keep Real-ESRGAN's published defaults; given on the command line, merged key by key over the "
        "recipe's (docs/degradations.md)",
    )
    cache_dir: typing.Optional[str] = option(None, "Hugging Face datasets cache (default: ~/.cache/huggingface)")
    cache_images: bool = option(False, "decode every image (and its LR) once and keep it in memory")
    subimage_size: int = option(0, "prepare step: cut HR images into sub-images of this side (0: off; 480 for DIV2K)")
    subimage_step: int = option(240, "prepare step: stride between sub-images")
    lr_patch_size: int = option(32, "side of the LR training patch; the HR patch is scale times that")
    flips: bool = option(True, "random horizontal and vertical flips")
    rot90: bool = option(True, "random 90-degree rotations")
    small_images: str = option("error", "image smaller than the patch: error | skip | pad (mirror pad)")
    skip_corrupt: bool = option(False, "skip unreadable images (counted in the log) instead of failing")
    repeat_images: bool = option(
        False,
        "allow fewer images than patches per micro-batch (processes x batch_size): "
        "each micro-batch then crops some images twice",
    )
    num_workers: int = option(0, "DataLoader worker processes per training process")
    persistent_workers: bool = option(True, "keep workers alive between passes (when num_workers > 0)")

    # --- validation ---
    val_dataset: str = option(
        "builtin",
        "builtin (held-out photos) | benchmark folder (HR/, LR_bicubic/X4/) | folder | save_to_disk | hub name | none",
    )
    val_split: str = option("validation", "split of a save_to_disk DatasetDict or hub data set for validation")
    val_images: int = option(0, "use at most this many validation images (0: all)")
    val_every: int = option(0, "validate every N optimizer steps (0: only at the end)")
    preview_images: int = option(3, "comparison images (bicubic | model | HR) written per validation")
    val_metrics: str = option(
        "psnr,ssim",
        "psnr,ssim[,lpips,fid,is]: lpips/fid/is need their weights, found via "
        "$SR_METRICS_WEIGHTS or torch's hub cache (docs/metrics.md)",
    )

    # --- optimisation (steps are optimizer steps, whatever the accumulation and number of processes) ---
    steps: int = option(1000, "optimizer steps")
    batch_size: int = option(16, "patches per micro-batch per process")
    gradient_accumulation_steps: int = option(1, "micro-batches per optimizer step")
    losses: dict = option(
        {"l1": 1.0}, f"weighted sum of losses, name: weight, e.g. {{l1: 1.0, mse: 0.5}}; names: {LOSSES.names()}"
    )
    optimizer: str = option("adam", OPTIMIZERS.names())
    lr: float = option(1e-3, "peak learning rate")
    betas: tuple = option((0.9, 0.999), "Adam betas")
    weight_decay: float = option(0.0, "weight decay")
    scheduler: str = option("cosine", SCHEDULERS.names())
    cycles: int = option(1, "cosine_restarts: number of cosine cycles over the run")
    warmup_fraction: float = option(0.0, "fraction of the schedule spent in a linear warm-up before it")
    schedule_steps: int = option(
        0,
        "length of the learning-rate schedule in optimizer steps (0: --steps); fixed when "
        "a run starts: steps beyond it (a resume with more --steps) run at its final rate",
    )
    min_lr: float = option(1e-7, "learning rate at the end of each cosine cycle (eta_min)")
    grad_clip: float = option(0.0, "clip the gradient norm to this (0: off)")
    max_nonfinite_steps: int = option(20, "stop the run after this many optimizer steps in a row with a NaN/inf loss")
    ema_decay: float = option(0.0, "EMA of weights, e.g. 0.999 (0: off); used for validation and final weights")
    mixed_precision: str = option(
        "auto",
        "auto (the launch config's fp16/bf16, else the fastest native here: "
        "CUDA bf16 or fp16, CPU bf16 with AMX/AVX512-BF16, else no) | no | fp16 | bf16",
    )
    seed: int = option(0, "seed of weights, patches and augmentations")
    num_threads: int = option(0, "CPU threads per process (0: the machine's cores / processes on it)")

    # --- outputs ---
    output_dir: typing.Optional[str] = option(None, "run folder (default: runs/<recipe>-<date>-<time>)")
    log_every: int = option(10, "log figures every N optimizer steps")
    save_every: int = option(0, "save a checkpoint every N optimizer steps (0: only at the end)")
    keep_checkpoints: int = option(2, "keep the last K checkpoints")
    resume: typing.Optional[str] = option(None, "checkpoint folder, or 'latest' (of --output-dir) to resume")
    stop_after: int = option(0, "stop (and checkpoint) after this step, as if interrupted (0: run to the end)")
    log_with: str = option(
        "auto", "auto (TensorBoard, installed with the toolkit, when importable) | tensorboard | none"
    )
    progress: bool = option(True, "tqdm progress bar")

    recipe: str = option("quickstart", "the recipe this config came from (set by --recipe)")

    def __post_init__(self):
        check_choices(self)
        self.losses = {name: float(weight) for name, weight in self.losses.items()}  # {l1: 1} is {l1: 1.0}

    @property
    def schedule_length(self):
        return self.schedule_steps or self.steps

    @property
    def warmup_steps(self):
        return round(self.warmup_fraction * self.schedule_length)

    def to_dict(self):
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


CHOICES = {
    "small_images": ("error", "skip", "pad"),
    "optimizer": OPTIMIZERS,  # the registries: a choice registered is a valid value
    "scheduler": SCHEDULERS,
    "mixed_precision": ("auto", "no", "fp16", "bf16"),
    "log_with": ("auto", "tensorboard", "none"),
    "lr_mode": ("auto", "bicubic", "degrade", "paired"),
}
POSITIVE = (
    "scale",
    "lr_patch_size",
    "steps",
    "batch_size",
    "gradient_accumulation_steps",
    "cycles",
    "log_every",
    "keep_checkpoints",
    "subimage_step",
    "max_nonfinite_steps",
)
NON_NEGATIVE = (
    "val_images",
    "val_every",
    "preview_images",
    "save_every",
    "stop_after",
    "schedule_steps",
    "num_workers",
    "num_threads",
    "subimage_size",
    "grad_clip",
    "ema_decay",
    "weight_decay",
    "min_lr",
    "warmup_fraction",
    "lr",
    "seed",
)

FINITE = ("lr", "min_lr", "weight_decay", "grad_clip", "ema_decay", "warmup_fraction", "betas")
# Far beyond any real run, and small enough that counts times batch sizes stay exact 64-bit integers.
UPPER_LIMITS = {
    "steps": 10**9,
    "schedule_steps": 10**9,
    "stop_after": 10**9,
    "save_every": 10**9,
    "val_every": 10**9,
    "log_every": 10**9,
    "max_nonfinite_steps": 10**9,
    "keep_checkpoints": 10**6,
    "batch_size": 65536,
    "gradient_accumulation_steps": 65536,
    "lr_patch_size": 4096,
    "subimage_size": 65536,
    "subimage_step": 65536,
    "num_workers": 1024,
    "num_threads": 4096,
    "val_images": 10**7,
    "preview_images": 10**4,
    "scale": 16,
    "seed": 2**32 - 1,  # numpy's and torch's seeds
    "cycles": 10**9,
}


def check_choices(config):
    for key, valid in CHOICES.items():
        if getattr(config, key) not in valid:
            raise ConfigError(f"{key}: {getattr(config, key)!r} is not one of {', '.join(valid)}")
    check_losses(config.losses)
    for key in POSITIVE:
        if getattr(config, key) <= 0:
            raise ConfigError(f"{key}: must be positive, got {getattr(config, key)}")
    for key in NON_NEGATIVE:
        if getattr(config, key) < 0:
            raise ConfigError(f"{key}: must not be negative, got {getattr(config, key)}")
    if config.ema_decay >= 1:
        raise ConfigError(f"ema_decay: must be below 1 (e.g. 0.999), got {config.ema_decay}")
    if len(config.betas) != 2:
        raise ConfigError(f"betas: expected two numbers, got {list(config.betas)}")
    if config.warmup_fraction >= 1:
        raise ConfigError(f"warmup_fraction: must be below 1, got {config.warmup_fraction}")
    for key in FINITE:
        values = getattr(config, key) if key == "betas" else (getattr(config, key),)
        if not all(math.isfinite(v) for v in values):
            raise ConfigError(f"{key}: must be a finite number, got {getattr(config, key)}")
    for key, limit in UPPER_LIMITS.items():
        if getattr(config, key) > limit:
            raise ConfigError(f"{key}: at most {limit:,}, got {getattr(config, key):,}")
    if not all(0 <= beta < 1 for beta in config.betas):
        raise ConfigError(f"betas: each must be in [0, 1), got {list(config.betas)}")
    if config.scheduler != "constant" and config.min_lr > config.lr:
        raise ConfigError(f"min_lr: the schedule decays from lr {config.lr} down to min_lr, got {config.min_lr}")
    if config.warmup_steps and config.warmup_steps >= config.schedule_length:
        raise ConfigError(
            f"warmup_fraction: {config.warmup_fraction} of a {config.schedule_length}-step schedule "
            f"is {config.warmup_steps} warm-up steps, leaving none for the schedule itself"
        )
    try:  # the model's own schema, before any folder is made or anything built (sr_models.registry)
        check_spec(config.model, config.scale, config.model_overrides, source="model_overrides")
    except UserError as error:  # a bug's ValueError keeps its traceback
        raise ConfigError(str(error)) from None

    degrade_options(config.degradations)  # checked whatever lr_mode is: right or wrong on their own

    from sr_models.evaluation.perceptual import (
        parse_metrics,  # deferred: the config module stays free of the metric nets
    )

    try:
        parse_metrics(config.val_metrics)
    except UserError as error:
        raise ConfigError(f"val_metrics: {error}") from None


def degrade_options(degradations):
    """The DegradeOptions of a config's `degradations` mapping (train/degrade/options.py owns the rules); a bad
    value is a ConfigError naming `degradations.<option>`, before any folder is made."""
    from train.degrade import DegradeOptionError, DegradeOptions

    try:
        return DegradeOptions.from_mapping(degradations, source="degradations")
    except DegradeOptionError as error:
        raise ConfigError(f"{error.option}: {error.problem}") from None


def check_losses(losses):
    """ConfigError unless `losses` maps registered loss names to finite weights >= 0, one of them positive."""
    valid = f"valid losses: {', '.join(LOSSES)}"
    if not losses:
        raise ConfigError(f"losses: empty: give at least one loss and its weight, e.g. {{l1: 1.0}}; {valid}")
    for name, weight in losses.items():
        if name not in LOSSES:
            raise ConfigError(f"losses: unknown loss {name!r}; {valid}")
        number = isinstance(weight, (int, float)) and not isinstance(weight, bool)
        if not number or not 0 <= weight < 1e308:  # NaN, inf and ints too large for a float fail the comparison
            raise ConfigError(f"losses: the weight of {name} must be a finite number >= 0, got {weight!r}; {valid}")
    if not any(losses.values()):
        raise ConfigError(f"losses: every weight is 0: nothing would be trained; {valid}")


# ---------------------------------------------------------------------------------------------------------------
# Values: every field's annotation decides what a YAML value or a command-line string may be.

FIELD_TYPES = {f.name: f.type for f in fields(TrainConfig)}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


def describe(annotation):
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        return f"{describe(inner[0])} or none"
    return {
        int: "an integer",
        float: "a number",
        bool: "true or false",
        str: "a string",
        dict: "a mapping like {key: value}",
        tuple: "a list of numbers like 0.9,0.99",
    }[annotation]


def coerce(key, value, *, source):
    """`value` (from YAML, or a command-line string) as the type of field `key`; ConfigError otherwise."""
    annotation = FIELD_TYPES[key]
    from_text = isinstance(value, str)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):  # Optional[str]
        if value is None or (from_text and value.lower() in ("none", "null")):
            return None
        annotation = str
    wrong = ConfigError(f"{source}: {key} must be {describe(FIELD_TYPES[key])}, got {value!r}")
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if from_text and value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        raise wrong
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if from_text:
            try:
                return int(value.replace("_", ""))
            except ValueError:
                pass
        raise wrong
    if annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if from_text:
            try:
                return float(value)  # YAML 1.1 reads "1e-3" as a string; float() does not
            except ValueError:
                pass
        raise wrong
    if annotation is str:
        if from_text:
            return value
        raise wrong
    if annotation is tuple:
        items = value.split(",") if from_text else value
        try:
            return tuple(float(v) for v in items)
        except (TypeError, ValueError):
            raise wrong from None
    if annotation is dict:
        if from_text:
            try:
                value = load_yaml_text(value, source=f"{source}: {key}") if value.strip() else {}
            except yaml.YAMLError:
                raise wrong from None
        if isinstance(value, dict) and all(isinstance(k, str) for k in value):
            return value
        raise wrong
    raise AssertionError(f"no coercion for {annotation}")


def unknown_key(key, *, source):
    valid = [f.name for f in fields(TrainConfig)] + ["loss"]
    close = difflib.get_close_matches(key, valid, n=1)
    hint = f"; did you mean {close[0]}?" if close else f"; valid keys: {', '.join(valid)}"
    return ConfigError(f"{source}: unknown key {key!r}{hint}")


def recipe_path(recipe):
    """A recipe name (train/recipes/<name>.yaml) or a YAML file path."""
    path = Path(recipe)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise ConfigError(f"{path}: no such recipe file")
        return path
    path = RECIPES / f"{recipe}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in RECIPES.glob("*.yaml"))
        raise ConfigError(f"unknown recipe {recipe!r}; recipes: {', '.join(names)} (or a path to a .yaml file)")
    return path


# Our configs are a flat mapping with a few small nested values (model_overrides, betas); yaml.safe_load builds
# nested values recursively, so a file nested thousands deep would end in a RecursionError.
MAX_YAML_DEPTH = 32


def load_yaml_text(text, *, source):
    """yaml.safe_load, refusing aliases and deep nesting: none of our files needs them, a few nested aliases can
    expand to gigabytes (a "billion laughs" file), and deep nesting exhausts the stack; events are scanned first
    (iteratively), so nothing is expanded or built before the refusal."""
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, yaml.AliasEvent):
            raise ConfigError(f"{source}: YAML aliases (*{event.anchor}) are not accepted; write the values out")
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(
                    f"{source}: YAML nested more than {MAX_YAML_DEPTH} levels deep (line "
                    f"{event.start_mark.line + 1}); a config is a mapping of keys to plain values"
                )
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
    return yaml.safe_load(text)


def read_yaml(path):
    try:
        values = load_yaml_text(Path(path).read_text(), source=path) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as error:
        raise ConfigError(f"{path}: not a readable YAML file ({' '.join(str(error).split())})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys to values, found {type(values).__name__}")
    return values


# Mappings whose keys are options of their own: given again (command line over recipe, overrides over a resumed
# run's config), they merge key by key, so `--degradations '{bicubic_share: 0.3}'` keeps the recipe's ranges.
MERGED_MAPPINGS = ("degradations",)


def apply(values, *, source, base=None):
    """Merge `values` (a dict of raw values) into `base` (a dict of checked values)."""
    merged = dict(base or {})
    for key, value in with_losses(values, source=source).items():
        if key not in FIELD_TYPES:
            raise unknown_key(key, source=source)
        value = coerce(key, value, source=source)
        merged[key] = {**merged[key], **value} if key in MERGED_MAPPINGS and key in merged else value
    return merged


def with_losses(values, *, source):
    """`values` (raw, keys with - or _) with keys in _ form and the shorthand `loss: NAME` written as `losses: {NAME:
    1.0}` (the only form in older recipes and run folders' config.yaml); a `losses` given beside it must agree."""
    values = {str(key).replace("-", "_"): value for key, value in values.items()}
    if "loss" not in values:
        return values
    name = values.pop("loss")
    if not isinstance(name, str) or name not in LOSSES:
        raise ConfigError(f"{source}: loss: {name!r} is not one of {', '.join(LOSSES)}")
    if "losses" not in values:
        return {**values, "losses": {name: 1.0}}
    losses = coerce("losses", values["losses"], source=source)
    if losses != {name: 1.0}:
        raise ConfigError(
            f"{source}: loss {name} means losses {{{name}: 1.0}}, but losses {losses} is given too: give one of them"
        )
    return values


def build(values, *, source):
    try:
        return TrainConfig(**values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_recipe(recipe, **overrides):
    """The config of a recipe with overrides applied (for code and tests): load_recipe('quickstart', steps=5)."""
    path = recipe_path(recipe)
    values = apply(read_yaml(path), source=str(path))
    values = apply(overrides, source="overrides", base=values)
    values.setdefault("recipe", path.stem)
    return build(values, source=str(path))


def save_config(config, path):
    atomic_write_text(path, yaml.safe_dump(config.to_dict(), sort_keys=False))


def parse_args(argv=None):
    """The config from the command line: `--recipe NAME` (default quickstart) then `--key value` overrides.

    With `--resume CHECKPOINT`, the base is the config saved in that checkpoint instead of a recipe, so that a
    resumed run continues with the settings it started with; overrides still apply (e.g. more --steps).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    known, unknown = command_line().parse_known_args(argv)
    if unknown:
        first = unknown[0]
        if first.startswith("--"):
            raise unknown_key(first[2:].split("=")[0].replace("-", "_"), source="command line")
        raise ConfigError(f"command line: unexpected argument {first!r} (options are --key value)")
    overrides = with_losses(vars(known), source="command line")  # --loss NAME is --losses '{NAME: 1.0}'
    recipe = overrides.pop("recipe")
    resume = overrides.get("resume")
    from_recipe = None
    if not resume:
        path = recipe_path(recipe or "quickstart")
        raw = read_yaml(path)
        checked = apply(raw, source=str(path))  # every key and value checked, naming the recipe file
        if "degradations" in checked:  # the recipe's own mapping is whole: its options are checked here too
            try:
                degrade_options(checked["degradations"])
            except ConfigError as error:
                raise ConfigError(f"{path}: {error}") from None
        if raw.get("resume") not in (None, "", "none", "null"):
            # A recipe's `resume:` is --resume: its other keys are overrides of the checkpoint's config, checked
            # for contradictions like the command line's, before any folder is made.
            from_recipe, recipe = path, None
            overrides = {**with_losses(raw, source=str(path)), **overrides}
            resume = overrides["resume"]
    if resume:
        # The base is the config the run started with; a resumed run lives in its checkpoint's folder
        # (train/run_folder.py), not in the one its saved config names.
        saved = saved_config(resume, overrides.get("output_dir"))
        values, planned = started_config(saved)
        values["schedule_steps"] = planned.schedule_length  # fixed when the run started, whatever --steps says now
        if recipe is not None:
            overrides["recipe"] = recipe_path(recipe).stem
        source = f"{saved} (resumed by {from_recipe})" if from_recipe else str(saved)
        refuse_contradictions(planned, overrides, source=source)
    else:
        values = apply(raw, source=str(path))
        values["recipe"] = path.stem
    values = apply(overrides, source="command line", base=values)
    return build(values, source="command line")


# --help in sections, each field in one of them (command_line checks), in this order.
HELP_GROUPS = {
    "data": (
        "dataset",
        "split",
        "image_column",
        "lr_column",
        "lr_dataset",
        "lr_mode",
        "degradations",
        "cache_dir",
        "cache_images",
        "subimage_size",
        "subimage_step",
        "lr_patch_size",
        "flips",
        "rot90",
        "small_images",
        "skip_corrupt",
        "repeat_images",
        "num_workers",
        "persistent_workers",
    ),
    "validation": ("val_dataset", "val_split", "val_images", "val_every", "preview_images", "val_metrics"),
    "model": ("model", "scale", "model_overrides", "init_weights", "init_strict", "sync_batchnorm"),
    "optimization": (
        "steps",
        "batch_size",
        "gradient_accumulation_steps",
        "loss",
        "losses",
        "optimizer",
        "lr",
        "betas",
        "weight_decay",
        "grad_clip",
        "max_nonfinite_steps",
        "ema_decay",
        "seed",
    ),
    "schedule": ("scheduler", "cycles", "warmup_fraction", "schedule_steps", "min_lr"),
    "precision & speed": ("mixed_precision", "channels_last", "compile", "num_threads"),
    "logging & outputs": ("output_dir", "log_every", "save_every", "keep_checkpoints", "log_with", "progress"),
    "resume": ("resume", "stop_after"),
}


def command_line():
    """The parser of train/run.py: `--recipe`, then one `--key VALUE` per config field (and `--loss`), in sections."""
    parser = argparse.ArgumentParser(
        prog="train/run.py",
        description=__doc__,
        epilog=choices_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,  # --lr must never be read as a prefix of --lr-patch-size
    )
    parser.add_argument(
        "--recipe", default=None, help="recipe name in train/recipes/ or a .yaml path (default quickstart)"
    )
    options = {
        f.name: (f.metadata["help"], f.default if f.default is not MISSING else f.default_factory())
        for f in fields(TrainConfig)
        if f.name != "recipe"
    }
    options["loss"] = (LOSSES.names(), "l1")  # the shorthand of losses: {NAME: 1.0}
    grouped = [name for names in HELP_GROUPS.values() for name in names]
    assert sorted(grouped) == sorted(options), f"HELP_GROUPS must list each option once: {set(grouped) ^ set(options)}"
    for title, names in HELP_GROUPS.items():
        group = parser.add_argument_group(title)
        for name in names:
            text, default = options[name]
            flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
            group.add_argument(
                *flags, dest=name, default=argparse.SUPPRESS, metavar="VALUE", help=with_default(text, default)
            )
    return parser


def choices_help():
    """The end of --help: every registered loss, optimizer and schedule with its description."""
    sections = {
        "losses (--losses NAME: WEIGHT, ..., or --loss NAME)": LOSSES,
        "optimizers (--optimizer)": OPTIMIZERS,
        "schedules (--scheduler)": SCHEDULERS,
    }
    lines = []
    for title, registry in sections.items():
        lines += [f"{title}:", *registry.listing(), ""]
    return "\n".join(lines[:-1])


def saved_config(resume, output_dir):
    """The config.yaml of the checkpoint that --resume names (a folder, or "latest" of --output-dir)."""
    if resume == "latest":
        if not output_dir:
            raise ConfigError("--resume latest needs --output-dir: the run folder to continue")
        checkpoint = latest_checkpoint(output_dir)
        if checkpoint is None:
            raise ConfigError(f"--resume latest: no complete checkpoint in {Path(output_dir) / 'checkpoints'}")
    else:
        checkpoint = Path(resume)
        if checkpoint.name.endswith(".partial"):
            raise ConfigError(
                f"{checkpoint}: a checkpoint that was never completed (its writer stopped); resume from another"
            )
    if not (checkpoint / "config.yaml").is_file():
        raise ConfigError(f"{checkpoint}: not a checkpoint folder of this toolkit (no config.yaml inside)")
    return checkpoint / "config.yaml"


def started_config(saved):
    """(values, config) of the config a run started with, from a checkpoint's config.yaml (an older one's `loss:`
    included); the run folder it names is left out: a resumed run lives in its checkpoint's folder."""
    values = apply(read_yaml(saved), source=str(saved))
    values.pop("output_dir", None)
    return values, build(values, source=str(saved))


# What a resumed run cannot change: its model, its optimizer state's meaning, its schedule and its data stream.
# (--steps can: steps past the planned schedule run at its final learning rate, see TrainConfig.schedule_steps.)
FIXED_ON_RESUME = (
    "recipe",
    "model",
    "scale",
    "model_overrides",
    "optimizer",
    "betas",
    "weight_decay",
    "lr",
    "min_lr",
    "scheduler",
    "cycles",
    "warmup_fraction",
    "schedule_steps",
    "seed",
    "batch_size",
    "gradient_accumulation_steps",
    "lr_patch_size",
    "losses",
    "lr_mode",
    "degradations",
)


def refuse_contradictions(planned, overrides, *, source):
    """ConfigError naming every override that contradicts the checkpoint's config `planned` (EMA on/off included)."""
    changed = []
    for key, raw in overrides.items():
        if key not in FIXED_ON_RESUME and key != "ema_decay":
            continue
        new = coerce(key, raw, source="command line")
        old = planned.schedule_length if key == "schedule_steps" else getattr(planned, key)
        if key in MERGED_MAPPINGS:  # merged over the run's, and compared as the options they make
            if degrade_options({**old, **new}) == degrade_options(old):
                continue
            new = {**old, **new}
        if key == "ema_decay" and (new > 0) == (old > 0):
            continue  # a different decay keeps EMA on; turning it on or off would drop or invent its state
        if new != old:
            changed.append(f"{key} {old!r} -> {new!r}")
    if changed:
        raise ConfigError(
            f"{source}: a resumed run continues as it was started; these overrides contradict it: "
            f"{', '.join(changed)}. Start a new run to change them"
        )


def refuse_resume_changes(config):
    """For a config built in code (load_recipe, build) with `resume`: the rule parse_args applies to the command
    line's overrides, applied to the whole config (its schedule length included). Nothing to check without resume."""
    if not config.resume:
        return
    saved = saved_config(config.resume, config.output_dir)
    _, planned = started_config(saved)
    given = {key: getattr(config, key) for key in (*FIXED_ON_RESUME, "ema_decay")}
    given["schedule_steps"] = config.schedule_length
    refuse_contradictions(planned, given, source=str(saved))


def with_default(text, default):
    """A field's help with its default appended, unless the text already says what the default is."""
    return text if "default" in text else f"{text} (default: {default})"


def latest_checkpoint(run_dir):
    """The newest complete checkpoint folder of a run (folders still named *.partial are not complete)."""
    folder = Path(run_dir) / "checkpoints"
    complete = sorted(p for p in folder.glob("step-*") if p.is_dir() and not p.name.endswith(".partial"))
    return complete[-1] if complete else None
