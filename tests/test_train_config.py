"""The training config: recipes, --key value overrides, and the errors a typo gets."""

import re
from pathlib import Path

import pytest

from train.checkpoint import resolve_resume
from train.config import RECIPES, ConfigError, TrainConfig, latest_checkpoint, load_recipe, parse_args

EXPECTED_RECIPES = {"quickstart", "pan_x4_report", "srresnet_x4_report", "pan_x4_paper"}


def test_every_recipe_loads_into_the_typed_config():
    names = {p.stem for p in RECIPES.glob("*.yaml")}
    assert EXPECTED_RECIPES <= names
    for name in names:
        config = load_recipe(name)
        assert isinstance(config, TrainConfig) and config.recipe == name


def test_recipes_say_what_the_report_and_the_paper_say():
    report = load_recipe("pan_x4_report")
    assert (report.model, report.loss, report.optimizer, report.lr, report.min_lr, report.scheduler) == (
        "pan", "l1", "adam", 1e-3, 1e-7, "cosine")  # fmt: skip
    assert report.batch_size * report.gradient_accumulation_steps == 32 and report.flips
    srresnet = load_recipe("srresnet_x4_report")
    assert (srresnet.model, srresnet.batch_size, srresnet.lr, srresnet.min_lr) == ("srresnet", 1, 1e-4, 1e-6)
    assert (srresnet.scheduler, srresnet.cycles) == ("cosine_restarts", 4)
    paper = load_recipe("pan_x4_paper")
    assert (paper.batch_size, paper.lr_patch_size * paper.scale, paper.lr, tuple(paper.betas)) == (32, 256, 7e-4, (0.9, 0.99))
    assert (paper.scheduler, paper.cycles, paper.steps, paper.min_lr) == ("cosine_restarts", 4, 1_000_000, 1e-7)
    assert paper.flips and paper.rot90


def test_the_default_is_quickstart_and_overrides_are_typed():
    config = parse_args([])
    assert config.recipe == "quickstart" and config.model == "pan" and config.scale == 4
    config = parse_args(["--lr", "5e-4", "--batch-size", "4", "--flips", "false", "--betas", "0.9,0.99",
                         "--model-overrides", "{channels: 8, num_blocks: 1}", "--output_dir", "none",
                         "--steps=7", "--warmup-fraction", "0.34"])  # fmt: skip
    assert config.lr == 5e-4 and isinstance(config.lr, float)
    assert config.batch_size == 4 and config.flips is False and config.betas == (0.9, 0.99)
    assert config.model_overrides == {"channels": 8, "num_blocks": 1}
    assert config.output_dir is None and config.steps == 7


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lrr", "1e-3"], "unknown key 'lrr'; did you mean lr?"),
        (["--bogus_option", "1"], "unknown key 'bogus_option'"),
        (["--steps", "ten"], "steps must be an integer, got 'ten'"),
        (["--lr", "fast"], "lr must be a number, got 'fast'"),
        (["--flips", "maybe"], "flips must be true or false, got 'maybe'"),
        (["--model-overrides", "[1, 2]"], "model_overrides must be a mapping"),
        (["--loss", "l3"], "loss: 'l3' is not one of l1, mse, charbonnier"),
        (["--steps", "0"], "steps: must be positive"),
        (["--recipe", "nope"], "unknown recipe 'nope'"),
        (["extra"], "unexpected argument 'extra'"),
    ],
)
def test_bad_command_lines_fail_with_a_message_naming_the_key(argv, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_args(argv)


def test_lr_is_not_taken_as_an_abbreviation_of_a_longer_option():
    assert parse_args(["--lr", "0.01"]).lr_patch_size == load_recipe("quickstart").lr_patch_size


def test_a_recipe_file_with_a_wrong_key_or_type_is_named(tmp_path):
    bad_key = tmp_path / "bad_key.yaml"
    bad_key.write_text("model: pan\nbatchsize: 4\n")
    with pytest.raises(ConfigError, match=rf"{bad_key}: unknown key 'batchsize'; did you mean batch_size\?"):
        parse_args(["--recipe", str(bad_key)])
    bad_type = tmp_path / "bad_type.yaml"
    bad_type.write_text("steps: 1.5\n")
    with pytest.raises(ConfigError, match=rf"{bad_type}: steps must be an integer, got 1.5"):
        parse_args(["--recipe", str(bad_type)])


def test_latest_checkpoint_ignores_half_written_ones(tmp_path):
    (tmp_path / "checkpoints" / "step-00000004").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-00000004" / "config.yaml").write_text("steps: 8\n")
    (tmp_path / "checkpoints" / "step-00000008.partial").mkdir()
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoints" / "step-00000004"
    with pytest.raises(ConfigError, match="never completed"):
        resolve_resume(str(tmp_path / "checkpoints" / "step-00000008.partial"), tmp_path)
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        resolve_resume("latest", tmp_path / "elsewhere")


def test_resuming_starts_from_the_config_saved_in_the_checkpoint(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.yaml").write_text("recipe: quickstart\nsteps: 8\nlr: 0.005\nwarmup_fraction: 0.1\n")
    config = parse_args(["--resume", "latest", "--output-dir", str(tmp_path), "--steps", "12"])
    assert (config.lr, config.steps, config.resume) == (0.005, 12, "latest")
    assert Path(config.output_dir) == tmp_path
