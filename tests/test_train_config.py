"""The training config: recipes, --key value overrides, and the errors a typo gets."""

import re
from pathlib import Path

import pytest
import torch

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
    assert (report.model, report.losses, report.optimizer, report.lr, report.min_lr, report.scheduler) == (
        "pan",
        {"l1": 1.0},
        "adam",
        1e-3,
        1e-7,
        "cosine",
    )
    assert report.batch_size * report.gradient_accumulation_steps == 32 and report.flips
    srresnet = load_recipe("srresnet_x4_report")
    assert (srresnet.model, srresnet.batch_size, srresnet.lr, srresnet.min_lr) == ("srresnet", 1, 1e-4, 1e-6)
    assert (srresnet.scheduler, srresnet.cycles) == ("cosine_restarts", 4)
    paper = load_recipe("pan_x4_paper")
    assert (paper.batch_size, paper.lr_patch_size * paper.scale, paper.lr, tuple(paper.betas)) == (
        32,
        256,
        7e-4,
        (0.9, 0.99),
    )
    assert (paper.scheduler, paper.cycles, paper.steps, paper.min_lr) == ("cosine_restarts", 4, 1_000_000, 1e-7)
    assert paper.flips and paper.rot90


def test_the_default_is_quickstart_and_overrides_are_typed():
    config = parse_args([])
    assert config.recipe == "quickstart" and config.model == "pan" and config.scale == 4
    config = parse_args(
        [
            "--lr",
            "5e-4",
            "--batch-size",
            "4",
            "--flips",
            "false",
            "--betas",
            "0.9,0.99",
            "--model-overrides",
            "{channels: 8, num_blocks: 1}",
            "--output_dir",
            "none",
            "--steps=7",
            "--warmup-fraction",
            "0.34",
        ]
    )
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


# ---------------------------------------------------------------------------------------------------------------
# Losses: a weighted mapping of registered names; --loss NAME is its shorthand


def test_loss_is_the_shorthand_of_losses_and_weights_are_numbers():
    assert parse_args([]).losses == {"l1": 1.0}
    assert parse_args(["--loss", "mse"]).losses == {"mse": 1.0} == parse_args(["--losses", "{mse: 1}"]).losses
    assert parse_args(["--losses", "{l1: 1, charbonnier: 0.5}"]).losses == {"l1": 1.0, "charbonnier": 0.5}
    assert parse_args(["--loss", "mse", "--losses", "{mse: 1.0}"]).losses == {"mse": 1.0}  # they agree
    assert load_recipe("quickstart", loss="charbonnier").losses == {"charbonnier": 1.0}


VALID_LOSSES = "valid losses: l1, mse, charbonnier"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--losses", "{l3: 1.0}"], f"losses: unknown loss 'l3'; {VALID_LOSSES}"),
        (
            ["--losses", "{l1: -1.0}"],
            f"losses: the weight of l1 must be a finite number >= 0, got -1.0; {VALID_LOSSES}",
        ),
        (["--losses", "{l1: .nan}"], "losses: the weight of l1 must be a finite number >= 0, got nan"),
        (["--losses", "{l1: .inf}"], "losses: the weight of l1 must be a finite number >= 0, got inf"),
        (["--losses", "{l1: 1" + "0" * 400 + "}"], "losses: the weight of l1 must be a finite number >= 0"),
        (["--losses", "{l1: heavy}"], "losses: the weight of l1 must be a finite number >= 0, got 'heavy'"),
        (["--losses", "{l1: true}"], "losses: the weight of l1 must be a finite number >= 0, got True"),
        (["--losses", "{}"], f"losses: empty: give at least one loss and its weight, e.g. {{l1: 1.0}}; {VALID_LOSSES}"),
        (["--losses", "{l1: 0, mse: 0}"], f"losses: every weight is 0: nothing would be trained; {VALID_LOSSES}"),
        (
            ["--loss", "mse", "--losses", "{l1: 1.0}"],
            "command line: loss mse means losses {mse: 1.0}, but losses {'l1': 1.0} is given too: give one of them",
        ),
    ],
)
def test_bad_losses_are_one_line_naming_the_valid_ones(argv, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as refused:
        parse_args(argv)
    assert "\n" not in str(refused.value)


def test_a_recipe_giving_loss_and_losses_that_disagree_is_named(tmp_path):
    recipe = tmp_path / "both.yaml"
    recipe.write_text("loss: mse\nlosses: {l1: 1.0, mse: 0.5}\n")
    with pytest.raises(ConfigError, match=re.escape(f"{recipe}: loss mse means losses {{mse: 1.0}}")):
        parse_args(["--recipe", str(recipe)])
    # Layers override each other: the command line's --loss replaces the recipe's losses.
    recipe.write_text("losses: {l1: 1.0, mse: 0.5}\n")
    assert parse_args(["--recipe", str(recipe), "--loss", "mse"]).losses == {"mse": 1.0}


def test_an_older_run_folder_saying_loss_resumes_with_its_losses_fixed(tmp_path):
    checkpoint = tmp_path / "checkpoints" / "step-00000004"
    checkpoint.mkdir(parents=True)
    (checkpoint / "config.yaml").write_text("recipe: quickstart\nsteps: 8\nloss: mse\n")  # before losses existed
    resume = ["--resume", "latest", "--output-dir", str(tmp_path)]
    assert parse_args(resume).losses == {"mse": 1.0}
    assert parse_args([*resume, "--loss", "mse"]).losses == {"mse": 1.0}
    assert parse_args([*resume, "--losses", "{mse: 1}"]).losses == {"mse": 1.0}
    with pytest.raises(ConfigError, match=re.escape("contradict it: losses {'mse': 1.0} -> {'l1': 1.0}")):
        parse_args([*resume, "--loss", "l1"])
    with pytest.raises(ConfigError, match=re.escape("losses {'mse': 1.0} -> {'mse': 1.0, 'l1': 0.1}")):
        parse_args([*resume, "--losses", "{mse: 1.0, l1: 0.1}"])


def test_help_is_in_sections_and_lists_every_registered_choice(capsys):
    from train.losses import LOSSES
    from train.optim import OPTIMIZERS, SCHEDULERS

    with pytest.raises(SystemExit):
        parse_args(["--help"])
    text = capsys.readouterr().out
    sections = [
        "data:",
        "validation:",
        "model:",
        "optimization:",
        "schedule:",
        "precision & speed:",
        "logging & outputs:",
        "resume:",
    ]
    assert [text.index(f"\n{title}\n") for title in sections] == sorted(text.index(f"\n{t}\n") for t in sections)
    assert "--loss VALUE          l1 | mse | charbonnier (default: l1)" in text
    for registry in (LOSSES, OPTIMIZERS, SCHEDULERS):
        for name, description in registry.descriptions.items():
            assert re.search(rf"\n  {name} +{re.escape(description)}\n", text + "\n")


def test_a_registered_optimizer_is_a_valid_choice_at_once():
    from train.optim import OPTIMIZERS

    @OPTIMIZERS.register("test_rmsprop", "RMSprop, registered by this test")
    def rmsprop(config, parameters):
        return torch.optim.RMSprop(parameters, lr=config.lr)

    try:
        assert parse_args(["--optimizer", "test_rmsprop"]).optimizer == "test_rmsprop"
    finally:
        del OPTIMIZERS["test_rmsprop"], OPTIMIZERS.descriptions["test_rmsprop"]
    with pytest.raises(ConfigError, match="optimizer: 'test_rmsprop' is not one of adam, adamw, sgd"):
        parse_args(["--optimizer", "test_rmsprop"])


def test_a_bugs_value_error_in_the_model_check_is_not_taken_for_a_config_error(monkeypatch):
    import train.config

    def broken(*args, **kwargs):
        raise ValueError("a bug, not the user's input")

    monkeypatch.setattr(train.config, "check_spec", broken)
    with pytest.raises(ValueError, match="a bug") as raised:
        parse_args([])
    assert not isinstance(raised.value, ConfigError)  # user_errors() lets it through with its traceback
