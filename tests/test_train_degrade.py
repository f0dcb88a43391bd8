"""lr_mode degrade in training: the three LR modes, the feed-step degradation, preview, log, validation, resume,
and disjoint draws between processes.

Tiny PAN on tiny photos, as in test_train_run.py; the degradation operators themselves are tested in
test_degrade.py.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from accelerate.data_loader import prepare_data_loader
from conftest import REPO, smooth_photos, train_config_in_process, train_in_process

from sr_models.errors import UserError
from sr_models.images import ImageError, load_rgb, save_rgb
from sr_models.weights import load_model
from train.config import ConfigError, load_recipe, parse_args
from train.data import load_source, training_loader, training_patches, write_store
from train.degrade.training import VALIDATION_SEED, degraded_sets, make_degrader

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

TINY = dict(
    model_overrides={"channels": 8, "upsample_channels": 8, "num_blocks": 1},
    lr_patch_size=12,  # HR 48: small, and still room for the pipeline's 21-tap kernels
    progress=False,
    log_every=1,
    log_with="none",
    num_threads=1,
    repeat_images=True,
    mixed_precision="no",
    channels_last=False,
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return smooth_photos(tmp_path_factory.mktemp("photos"), count=6, blocks=(12, 14), seed=3)


def config_for(tmp_path, name, data, **overrides):
    values = {**TINY, "output_dir": str(tmp_path / name), "dataset": str(data), "val_dataset": "none"}
    values["cache_dir"] = str(data.parent / "hf-cache")
    return load_recipe("quickstart", **{**values, **overrides})


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def weights(run_dir):
    return load_model(run_dir / "model.safetensors").state_dict()


def test_a_degrade_run_previews_logs_and_validates_on_degraded_and_clean_images(tmp_path, photos):
    run_dir = train_config_in_process(
        config_for(tmp_path, "run", photos, steps=3, batch_size=2, lr_mode="degrade", val_dataset=str(photos))
    )
    log = read_log(run_dir)
    start = log[0]
    assert start["lr_mode"] == "degrade"
    assert start["degradations"]["jpeg_range"] == [30, 95]  # Real-ESRGAN's default, as none was set
    # The preview: one row per patch of the run's first 8 (this run has 6) of degraded LR, pixels repeated x4,
    # beside its HR.
    preview = load_rgb(run_dir / "preview" / "degradations.png")
    hr_side, gap = 48, 4
    assert preview.shape[1] == 2 * hr_side + gap
    assert preview.shape[0] == 6 * hr_side + 5 * gap
    # Every step's log line summarises what was drawn for its patches.
    drawn = [r["degradations"] for r in log if "loss" in r]
    assert len(drawn) == 3 and all(d["samples"] == 2 for d in drawn)
    # Validation: the clean set first (val/psnr_y means the clean set in every mode), then its degraded copy.
    metrics = json.loads((run_dir / "metrics.json").read_text())
    labels = list(metrics["val_sets"])
    assert labels == [photos.name, f"{photos.name}-degraded"]
    clean, degraded = (metrics["val_sets"][label] for label in labels)
    assert metrics["psnr_y"] == clean["psnr_y"]
    assert degraded["bicubic_psnr_y"] < clean["bicubic_psnr_y"] - 0.5, "the degraded LR is farther from the HR"


def test_the_degraded_validation_images_are_the_same_in_every_run(tmp_path, photos):
    config = config_for(tmp_path, "v", photos, lr_mode="degrade", seed=1)
    other = config_for(tmp_path, "w", photos, lr_mode="degrade", seed=2)  # another run's seed: the same images
    hr = np.asarray(load_rgb(sorted(photos.glob("*.png"))[0]))
    from sr_models.evaluation.samples import sample_from_hr

    sets = {"p": [sample_from_hr("p0", hr, 4), sample_from_hr("p1", hr, 4)]}
    first, second = degraded_sets(sets, config), degraded_sets(sets, other)
    assert list(first) == ["p", "p-degraded"]
    assert all(np.array_equal(a.lr, b.lr) for a, b in zip(first["p-degraded"], second["p-degraded"]))
    # Two images at different positions draw different degradations, even from the same HR.
    assert not np.array_equal(first["p-degraded"][0].lr, first["p-degraded"][1].lr)
    assert first["p"] is sets["p"] and VALIDATION_SEED not in (config.seed, other.seed)


def test_resuming_a_degrade_run_gives_the_weights_of_an_uninterrupted_one(tmp_path, photos):
    common = dict(steps=4, batch_size=2, lr_mode="degrade", lr=3e-3, degradations={"bicubic_share": 0.25})
    straight = train_config_in_process(config_for(tmp_path, "straight", photos, **common))
    interrupted = train_config_in_process(config_for(tmp_path, "resumed", photos, **common, stop_after=2))
    resumed = train_in_process(["--resume", "latest", "--output-dir", str(interrupted), "--stop-after", "0"])
    a, b = weights(straight), weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a), "the resumed run drew the same degradations"
    summaries = lambda d: [r["degradations"] for r in read_log(d) if "loss" in r][-2:]  # noqa: E731
    assert summaries(straight) == summaries(resumed)
    starts = [r for r in read_log(resumed) if r.get("event") == "start"]
    assert starts[-1]["degradation_preview"] == str(resumed / "preview" / "degradations.png")
    assert (resumed / "preview" / "degradations.png").is_file()


def test_a_resumed_degrade_run_refuses_changed_degradations_and_accepts_the_same_ones(tmp_path, photos):
    run_dir = train_config_in_process(
        config_for(tmp_path, "r", photos, steps=2, batch_size=2, lr_mode="degrade", stop_after=1)
    )
    resume = ["--resume", "latest", "--output-dir", str(run_dir)]
    with pytest.raises(ConfigError, match=r"contradict it: degradations"):
        train_in_process([*resume, "--degradations", "{noise_range: [1, 5]}"])
    # The default value given explicitly makes the same options: not a change.
    assert train_in_process([*resume, "--degradations", "{noise_range: [1.0, 30.0]}"]) == run_dir


def test_a_different_seed_draws_different_degradations(tmp_path, photos):
    patches, _ = training_patches(config_for(tmp_path, "s", photos, lr_mode="degrade"), length=8)
    batch = next(iter(training_loader(patches, batch_size=4, num_workers=0, persistent_workers=False)))
    hr, lr = batch["hr"].float() / 255, batch["lr"].float() / 255
    indices = batch["index"].tolist()
    one = make_degrader(config_for(tmp_path, "s", photos, lr_mode="degrade", seed=0))(hr, indices, bicubic_lr=lr)
    two = make_degrader(config_for(tmp_path, "s", photos, lr_mode="degrade", seed=1))(hr, indices, bicubic_lr=lr)
    assert not torch.equal(one[0], two[0])


def test_two_processes_draw_disjoint_degradations(tmp_path, photos):
    """Accelerate shards the loader between processes: each patch position goes to one process only, and a
    patch's degradation is a function of its position, so no two processes draw the same one."""
    config = config_for(tmp_path, "d", photos, lr_mode="degrade")
    patches, _ = training_patches(config, length=32)
    degrader = make_degrader(config)
    seen, outputs = [], []
    for rank in range(2):
        loader = training_loader(patches, batch_size=4, num_workers=0, persistent_workers=False)
        shard = prepare_data_loader(loader, device=torch.device("cpu"), num_processes=2, process_index=rank)
        indices, lrs = [], []
        for batch in shard:
            indices += batch["index"].tolist()
            lrs.append(degrader(batch["hr"].float() / 255, batch["index"].tolist(), bicubic_lr=None)[0])
        seen.append(set(indices))
        outputs.append(torch.cat(lrs))
    assert not seen[0] & seen[1] and seen[0] | seen[1] == set(range(32))
    flat = [o.flatten(1) for o in outputs]
    assert not any(torch.equal(a, b) for a in flat[0] for b in flat[1])


def test_the_lr_modes_are_explicit_and_refuse_data_they_cannot_use(tmp_path, photos):
    lr_folder = tmp_path / "lr"
    for path in sorted(photos.glob("*.png")):
        hr = load_rgb(path)
        save_rgb(lr_folder / path.name, hr[::4, ::4])
    cache = str(tmp_path / "hf-cache")
    hr_store, pair_store = tmp_path / "hr-store", tmp_path / "pair-store"
    write_store(load_source(str(photos), split="train", cache_dir=cache), hr_store, scale=4)
    write_store(
        load_source(str(photos), split="train", lr_dataset=str(lr_folder), cache_dir=cache), pair_store, scale=4
    )
    cases = {
        ("paired", None, photos): "has no LR images",
        ("paired", None, hr_store): "has no LR images",  # a store of HR images holds bicubic LR only
        ("degrade", str(lr_folder), photos): "would go unused",
        ("bicubic", str(lr_folder), photos): "would go unused",
        ("bicubic", None, pair_store): "would go unused",  # the store's LR came from pairs
        ("degrade", None, pair_store): "would go unused",
    }
    for (mode, lr_dataset, data), message in cases.items():
        config = config_for(tmp_path, f"m-{mode}", data, lr_mode=mode, lr_dataset=lr_dataset, steps=1)
        with pytest.raises(ImageError, match=message):
            train_config_in_process(config)
    for mode, data, expected in (("auto", hr_store, "bicubic"), ("degrade", hr_store, "degrade")):
        run_dir = train_config_in_process(config_for(tmp_path, f"s-{mode}", data, lr_mode=mode, steps=1, batch_size=2))
        assert read_log(run_dir)[0]["lr_mode"] == expected
    # auto: paired with LR images, bicubic without; a paired run logs its mode.
    run_dir = train_config_in_process(
        config_for(tmp_path, "paired", photos, lr_mode="auto", lr_dataset=str(lr_folder), steps=1, batch_size=2)
    )
    assert read_log(run_dir)[0]["lr_mode"] == "paired"


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"lr_mode": "degrade", "degradations": {"jpeg_range": [0, 90]}}, "degradations.jpeg_range"),
        ({"lr_mode": "degrade", "degradations": {"blur_sigma": [-1, 2]}}, "degradations.blur_sigma"),
        ({"lr_mode": "degrade", "degradations": {"sinc_prob": 1.5}}, "degradations.sinc_prob"),
        ({"lr_mode": "degrade", "degradations": {"noise": 1}}, "degradations"),
        ({"lr_mode": "bicubic", "degradations": {"sinc_prob": 1.5}}, "degradations.sinc_prob"),  # checked anyway
        ({"seed": -1}, "seed: must not be negative"),
        ({"seed": 2**32}, "seed: at most"),
        ({"lr_mode": "sharpen"}, "lr_mode"),
    ],
)
def test_bad_degradation_options_are_refused_before_anything_is_made(tmp_path, photos, overrides, message):
    with pytest.raises(UserError, match=message):  # ConfigError, or the degradation options' own error
        config_for(tmp_path, "bad", photos, **overrides)
    assert not (tmp_path / "bad").exists()


def test_a_bad_degradation_option_is_one_line_through_the_command(tmp_path):
    result = subprocess.run(
        [sys.executable, "train/run.py", "--recipe", "pan_x4_realworld", "--degradations", "{jpeg_range_2: [50, 101]}"]
        + ["--output-dir", str(tmp_path / "run")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "degradations.jpeg_range_2" in lines[0]
    assert lines[0].count("degradations") == 1, lines[0]
    assert "Traceback" not in result.stderr and not (tmp_path / "run").exists()


def test_degradations_on_the_command_line_merge_into_the_recipes(tmp_path):
    recipe = load_recipe("pan_x4_realworld")
    assert parse_args(["--recipe", "pan_x4_realworld"]).degradations == recipe.degradations
    merged = parse_args(["--recipe", "pan_x4_realworld", "--degradations", "{bicubic_share: 0.5, noise_range: [2, 4]}"])
    assert merged.degradations == {**recipe.degradations, "bicubic_share": 0.5, "noise_range": [2, 4]}


def test_degradations_of_another_mode_are_ignored_with_a_note(tmp_path, photos, capsys):
    config = config_for(tmp_path, "n", photos, lr_mode="bicubic", degradations={"sinc_prob": 0.5}, steps=1)
    run_dir = train_config_in_process(config)
    assert "note: degradations ignored: lr_mode is bicubic" in capsys.readouterr().out
    assert read_log(run_dir)[0]["lr_mode"] == "bicubic" and "degradations" not in read_log(run_dir)[0]


@pytest.mark.parametrize("recipe", ["pan_x4_realworld", "srresnet_x4_realworld"])
def test_the_realworld_recipes_degrade(recipe):
    config = load_recipe(recipe)
    assert config.lr_mode == "degrade" and config.scale == 4
    make_degrader(config)  # their options are valid


def test_a_bad_degradation_in_a_recipe_file_names_the_file(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("model: pan\nlr_mode: degrade\ndegradations: {blur_sigma: [0.5, 300]}\n")
    with pytest.raises(ConfigError, match=rf"^{recipe}: degradations.blur_sigma: sigma 300 is outside 0.01..100.0$"):
        parse_args(["--recipe", str(recipe), "--output-dir", str(tmp_path / "run")])
    assert not (tmp_path / "run").exists()
