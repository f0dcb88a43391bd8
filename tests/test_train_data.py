"""Training data: sources (folder, save_to_disk, paired), aligned patches, the prepare step, bad images."""

import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from sr_models.evaluation.metrics import mod_crop
from sr_models.evaluation.resize import downscale_image
from sr_models.images import ImageError, load_rgb, save_rgb
from train.config import load_recipe
from train.data import (
    BUILTIN_HELD_OUT,
    BUILTIN_TRAIN,
    ImagePairs,
    PatchDataset,
    builtin_folder,
    load_source,
    prepare_subimages,
    subimage_starts,
    training_loader,
    training_patches,
    usable_images,
    validation_samples,
)

SCALE = 4


def photo(height, width, seed):
    """A smooth random image: bicubic of it is well-behaved, unlike white noise."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    big = np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]
    return (big * 0.7 + rng.integers(0, 76, size=big.shape)).astype(np.uint8)


@pytest.fixture
def hr_folder(tmp_path):
    folder = tmp_path / "hr"
    for i, (h, w) in enumerate([(70, 90), (66, 81), (96, 64)]):  # not multiples of 4: mod-crop matters
        save_rgb(folder / f"img{i}.png", photo(h, w, i))
    return folder


def test_builtin_images_are_installed_and_the_held_out_ones_are_not_trained_on():
    assert not set(BUILTIN_TRAIN) & set(BUILTIN_HELD_OUT)
    for name in BUILTIN_TRAIN + BUILTIN_HELD_OUT:
        assert (builtin_folder() / name).is_file(), name


def test_a_folder_loads_through_imagefolder_with_lr_from_matlab_bicubic(hr_folder, tmp_path):
    pairs = ImagePairs(load_source(str(hr_folder), split="train", cache_dir=str(tmp_path / "cache")), scale=SCALE)
    assert len(pairs) == 3 and not pairs.paired
    hr, lr = pairs.load(1)
    expected_hr = mod_crop(load_rgb(hr_folder / "img1.png"), SCALE)
    np.testing.assert_array_equal(hr, expected_hr)
    np.testing.assert_array_equal(lr, downscale_image(expected_hr, SCALE))
    assert pairs.lr_size(1) == lr.shape[:2]


def test_save_to_disk_data_with_its_own_column_name(hr_folder, tmp_path):
    paths = sorted(str(p) for p in hr_folder.iterdir())
    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"photo": paths, "caption": ["a", "b", "c"]}).cast_column(
        "photo", datasets.Image()
    ).save_to_disk(str(saved))
    dataset = load_source(str(saved), split="train")
    assert dataset.column_names == ["hr"]
    record = dataset[2]["hr"]
    assert record["bytes"], "save_to_disk embeds the image bytes"
    hr, _ = ImagePairs(dataset, scale=SCALE).load(2)
    np.testing.assert_array_equal(hr, mod_crop(load_rgb(paths[2]), SCALE))


def test_paired_data_uses_the_given_lr_as_it_is(hr_folder, tmp_path):
    lr_folder = tmp_path / "lr"
    for path in hr_folder.iterdir():
        hr = mod_crop(load_rgb(path), SCALE)
        save_rgb(lr_folder / f"{path.stem}x4.png", 255 - downscale_image(hr, SCALE))  # clearly not bicubic
    pairs = ImagePairs(
        load_source(str(hr_folder), split="train", lr_dataset=str(lr_folder), cache_dir=str(tmp_path / "cache")),
        scale=SCALE,
    )
    assert pairs.paired
    hr, lr = pairs.load(0)
    np.testing.assert_array_equal(lr, load_rgb(lr_folder / "img0x4.png"))
    # The same pairs as an `lr` column of a saved data set.
    saved = tmp_path / "paired"
    datasets.Dataset.from_dict(
        {"hr": [str(hr_folder / "img0.png")], "lr": [str(lr_folder / "img0x4.png")]}
    ).cast_column("hr", datasets.Image()).cast_column("lr", datasets.Image()).save_to_disk(str(saved))
    hr2, lr2 = ImagePairs(load_source(str(saved), split="train"), scale=SCALE).load(0)
    np.testing.assert_array_equal(hr2, hr)
    np.testing.assert_array_equal(lr2, lr)


def test_patches_are_aligned_augmented_and_a_function_of_seed_and_position(hr_folder, tmp_path):
    pairs = ImagePairs(load_source(str(hr_folder), split="train", cache_dir=str(tmp_path / "cache")), scale=SCALE)
    patches = PatchDataset(pairs, lr_patch_size=12, length=24, seed=3)
    again = PatchDataset(pairs, lr_patch_size=12, length=24, seed=3)
    other_seed = PatchDataset(pairs, lr_patch_size=12, length=24, seed=4)
    for index in range(24):
        sample = patches[index]
        lr, hr = sample["lr"].numpy().transpose(1, 2, 0), sample["hr"].numpy().transpose(1, 2, 0)
        assert lr.shape == (12, 12, 3) and hr.shape == (48, 48, 3) and sample["skipped"] == 0
        # Aligned: bicubic of the HR patch is the LR patch up to the borders (where it sees a mirror, not the
        # real neighbours) and rounding.
        inner = np.abs(downscale_image(hr, SCALE).astype(int) - lr.astype(int))[2:-2, 2:-2]
        assert inner.mean() < 1.0, index
        np.testing.assert_array_equal(sample["hr"], again[index]["hr"])
    assert any(not np.array_equal(patches[i]["hr"], other_seed[i]["hr"]) for i in range(24))
    # Each pass over the data uses every image once.
    first_pass = {id_of_image(patches, i) for i in range(3)}
    assert first_pass == {0, 1, 2}


def id_of_image(patches, index):
    n = len(patches.usable)
    return patches.usable[int(patches.order(index // n)[index % n])]


def test_a_corrupt_file_is_named_or_skipped_and_counted(hr_folder, tmp_path):
    good = (hr_folder / "img1.png").read_bytes()
    (hr_folder / "truncated.png").write_bytes(good[: len(good) // 2])  # header fine, pixels cut off
    pairs = ImagePairs(load_source(str(hr_folder), split="train", cache_dir=str(tmp_path / "cache")), scale=SCALE)
    truncated = next(i for i in range(len(pairs)) if pairs.name(i).endswith("truncated.png"))
    strict = PatchDataset(pairs, lr_patch_size=8, length=8)
    with pytest.raises(ImageError, match=r"truncated\.png: truncated or corrupt"):
        strict.__getitem__(next(i for i in range(8) if id_of_image(strict, i) == truncated))
    lenient = PatchDataset(pairs, lr_patch_size=8, length=8, skip_corrupt=True)
    skipped = sum(int(lenient[i]["skipped"]) for i in range(8))
    assert skipped == sum(id_of_image(lenient, i) == truncated for i in range(8)) >= 1

    (hr_folder / "not_an_image.png").write_bytes(b"this is text")
    pairs = ImagePairs(load_source(str(hr_folder), split="train", cache_dir=str(tmp_path / "cache")), scale=SCALE)
    with pytest.raises(ImageError, match=r"not_an_image\.png: not an image file"):
        usable_images(pairs, lr_patch_size=8, small_images="error", skip_corrupt=False)
    usable, left_out = usable_images(pairs, lr_patch_size=8, small_images="error", skip_corrupt=True)
    assert left_out["small"] == 0 and left_out["corrupt"] == 1 and len(usable) == len(pairs) - 1
    assert [Path(name).name for name in left_out["corrupt_names"]] == ["not_an_image.png"]  # named for the log


def test_the_small_image_rule(hr_folder, tmp_path):
    pairs = ImagePairs(load_source(str(hr_folder), split="train", cache_dir=str(tmp_path / "cache")), scale=SCALE)
    # LR sizes: 17x22, 16x20, 24x16. A 17-pixel LR patch fits only img0.
    with pytest.raises(ImageError, match=r"img1\.png: too small for the patch: LR 20x16 \(HR 80x64\) < LR patch 17x17"):
        usable_images(pairs, lr_patch_size=17, small_images="error", skip_corrupt=False)
    usable, left_out = usable_images(pairs, lr_patch_size=17, small_images="skip", skip_corrupt=False)
    assert [pairs.name(i)[-8:] for i in usable] == ["img0.png"] and left_out["small"] == 2
    assert sorted(Path(name).name for name in left_out["small_names"]) == ["img1.png", "img2.png"]
    padded = PatchDataset(pairs, lr_patch_size=17, length=6, small_images="pad", flips=False, rot90=False)
    for index in range(6):
        sample = padded[index]
        assert sample["lr"].shape == (3, 17, 17) and sample["hr"].shape == (3, 68, 68)
    # Mirror padding keeps LR and HR aligned: the padded HR's bicubic is the padded LR (inside, up to rounding).
    hr, lr = pairs.load(1)
    lr_pad, hr_pad = padded.fit(lr, hr, name="img1")
    inner = np.abs(downscale_image(hr_pad, SCALE).astype(int) - lr_pad.astype(int))[2:-2, 2:-2]
    assert lr_pad.shape[:2] == (17, 20) and inner.mean() < 1.0


@pytest.mark.parametrize("small_images", ["error", "pad"])
def test_an_image_smaller_than_the_scale_is_named_as_such(tmp_path, small_images):
    """A 3x2 image at x4 has no LR pixel: its message says so, not "LR 0x0 (HR 0x0)"."""
    folder = tmp_path / "hr"
    save_rgb(folder / "big.png", np.zeros((40, 40, 3), np.uint8))
    save_rgb(folder / "speck.png", np.zeros((2, 3, 3), np.uint8))
    pairs = ImagePairs(load_source(str(folder), split="train", cache_dir=str(tmp_path / "cache")), scale=4)
    with pytest.raises(ImageError, match=r"speck\.png: narrower or lower than 4 pixels, so at x4 it has no LR pixel"):
        usable_images(pairs, lr_patch_size=8, small_images=small_images, skip_corrupt=False)


def test_the_prepare_step_cuts_aligned_subimages_once_and_caches_them(hr_folder, tmp_path):
    cache = tmp_path / "cache"
    source = load_source(str(hr_folder), split="train", cache_dir=str(cache))
    prepared = prepare_subimages(source, scale=SCALE, size=32, step=16, cache_dir=str(cache))
    # 68x88 -> LR 17x22: rows start at 0 and 1 (flush with the edge); columns 0, 4, 6 ...
    expected = 0
    for i in range(len(source)):
        hr = mod_crop(load_rgb(source[i]["hr"]["path"]), SCALE)
        expected += len(subimage_starts(hr.shape[0] // 4, 8, 4)) * len(subimage_starts(hr.shape[1] // 4, 8, 4))
    assert len(prepared) == expected
    pairs = ImagePairs(prepared, scale=SCALE)
    assert pairs.paired
    hr_full = mod_crop(load_rgb(hr_folder / "img0.png"), SCALE)
    lr_full = downscale_image(hr_full, SCALE)
    first_hr, first_lr = pairs.load(0)
    # LR sub-images are cut from the LR of the whole image (not made from the sub-image).
    np.testing.assert_array_equal(first_hr, hr_full[:32, :32])
    np.testing.assert_array_equal(first_lr, lr_full[:8, :8])
    cached = list((cache / "sr-toolkit-subimages").glob("*.arrow"))
    assert len(cached) == 1
    again = prepare_subimages(source, scale=SCALE, size=32, step=16, cache_dir=str(cache))
    assert again.cache_files[0]["filename"] == str(cached[0])


def test_subimage_positions_cover_the_image_like_basicsr():
    assert subimage_starts(100, 48, 24) == [0, 24, 48, 52]
    assert subimage_starts(96, 48, 24) == [0, 24, 48]
    assert subimage_starts(40, 48, 24) == [0]


def test_validation_from_a_benchmark_folder_uses_its_lr_files(tmp_path):
    hr = photo(64, 48, 7)
    save_rgb(tmp_path / "bench" / "HR" / "bird.png", hr)
    official_lr = downscale_image(hr, SCALE) // 2  # different from bicubic on purpose
    save_rgb(tmp_path / "bench" / "LR_bicubic" / "X4" / "birdx4.png", official_lr)
    config = load_recipe("quickstart", val_dataset=str(tmp_path / "bench"))
    [sample] = validation_samples(config)
    assert sample.name == "bird"
    np.testing.assert_array_equal(sample.lr, official_lr)
    assert [s.name for s in validation_samples(load_recipe("quickstart"))] == [Path(n).stem for n in BUILTIN_HELD_OUT]


def test_training_patches_from_a_config(hr_folder, tmp_path):
    config = load_recipe(
        "quickstart",
        dataset=str(hr_folder),
        cache_dir=str(tmp_path / "cache"),
        lr_patch_size=8,
        subimage_size=32,
        subimage_step=32,
        cache_images=True,
    )
    patches, left_out = training_patches(config, length=10)
    assert len(patches) == 10 and left_out == {"small": 0, "corrupt": 0, "small_names": [], "corrupt_names": []}
    assert patches.pairs.cache is not None and patches[9]["hr"].shape == (3, 32, 32)


def test_workers_give_the_same_batches_as_the_main_process(hr_folder, tmp_path):
    pairs = ImagePairs(load_source(str(hr_folder), split="train", cache_dir=str(tmp_path / "cache")), scale=SCALE)
    patches = PatchDataset(pairs, lr_patch_size=8, length=12, seed=5)
    batches = [
        [batch["hr"] for batch in training_loader(patches, batch_size=3, num_workers=workers, persistent_workers=True)]
        for workers in (0, 2)
    ]
    assert len(batches[0]) == 4
    assert all(torch.equal(a, b) for a, b in zip(*batches))


def test_the_prepare_step_in_several_processes_after_torch_used_its_threads(hr_folder, tmp_path):
    # In a subprocess with a timeout: the failure this guards against (libgomp after fork) is a hang, not an error.
    script = f"""
import torch
from train.data import load_source, prepare_subimages
torch.ones(512, 512) @ torch.ones(512, 512)  # OpenMP threads started, as in a training process
source = load_source({str(hr_folder)!r}, split="train", cache_dir={str(tmp_path / "cache")!r})
one = prepare_subimages(source, scale=4, size=32, step=16, cache_dir={str(tmp_path / "one")!r})
two = prepare_subimages(source, scale=4, size=32, step=16, cache_dir={str(tmp_path / "two")!r}, num_proc=2)
assert len(two) == len(one) and two[len(two) - 1]["hr"]["bytes"] == one[len(one) - 1]["hr"]["bytes"]
print("ok", len(two))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-2000:]


def test_file_names_that_look_like_split_names_lose_no_image(tmp_path, capfd):
    """`datasets`' imagefolder builder reads train0.png / test_a.png as split names and would drop the rest."""
    folder = tmp_path / "mine"
    (folder / "sub").mkdir(parents=True)
    for name in ("train0.png", "tiny.png", "test_a.png", "sub/x.png"):
        save_rgb(folder / name, np.zeros((8, 8, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    dataset = load_source(str(folder), split="train", cache_dir=str(tmp_path / "cache"))
    assert sorted(Path(record["path"]).name for record in dataset["hr"]) == [
        "test_a.png",
        "tiny.png",
        "train0.png",
        "x.png",
    ]
    assert "Downloading" not in capfd.readouterr().err  # nothing is downloaded: no bars saying so
