"""The decoded store (train/data/store.py): the same pairs and patches as decoding, shared maps, damage named."""

import json
import multiprocessing
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import train_in_process

from sr_models.evaluation.metrics import mod_crop
from sr_models.evaluation.resize import downscale_image
from sr_models.images import ImageError, load_rgb, save_rgb
from sr_models.weights import load_model
from train.data import (
    ImagePairs,
    PatchDataset,
    StorePairs,
    load_source,
    training_loader,
    write_store,
)

REPO = Path(__file__).resolve().parents[1]
SCALE = 4


def photo(height, width, seed):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, size=(height // 8 + 1, width // 8 + 1, 3), dtype=np.uint8)
    return np.kron(small, np.ones((8, 8, 1), dtype=np.uint8))[:height, :width]


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hr")
    for i, (h, w) in enumerate([(70, 90), (66, 81), (96, 64), (64, 72)]):  # not multiples of 4: mod-crop matters
        save_rgb(folder / f"img{i}.png", photo(h, w, i))
    return folder


@pytest.fixture(scope="module")
def source(hr_folder):
    return load_source(str(hr_folder), split="train", cache_dir=str(hr_folder.parent / "hf-cache"))


@pytest.fixture(scope="module")
def store(source, tmp_path_factory):
    path = tmp_path_factory.mktemp("stores") / "x4.store"
    assert write_store(source, path, scale=SCALE) == (4, 0)
    return path


def test_the_store_holds_the_decoded_pairs_and_gives_the_same_patches(source, store, hr_folder):
    pairs, stored = ImagePairs(source, scale=SCALE), StorePairs(store, scale=SCALE)
    assert len(stored) == 4 and sorted(p.name for p in store.iterdir()) == ["hr.u8", "lr.u8", "store.json"]
    for i in range(4):
        hr, lr = stored.load(i)
        # Independently of the toolkit's decode path: the PNG read back, mod-cropped, and its bicubic LR.
        expected_hr = mod_crop(load_rgb(hr_folder / stored.names[i]), SCALE)
        np.testing.assert_array_equal(hr, expected_hr)
        np.testing.assert_array_equal(lr, downscale_image(expected_hr, SCALE))
        assert stored.lr_size(i) == pairs.lr_size(i) == lr.shape[:2]
        assert not hr.flags.writeable, "mapped read-only"
    # Patches are a function of (seed, index) whatever the source: the same tensors from the store as from decoding.
    a, b = (PatchDataset(p, lr_patch_size=8, length=16, seed=3) for p in (pairs, stored))
    assert all(torch.equal(a[i]["hr"], b[i]["hr"]) and torch.equal(a[i]["lr"], b[i]["lr"]) for i in range(16))


def test_workers_map_the_store_themselves(store):
    stored = StorePairs(store, scale=SCALE)
    stored.load(0)  # maps opened in this process ...
    assert len(pickle.dumps(stored)) < 10_000, "... but a spawned worker receives file names, not the data"
    patches = PatchDataset(stored, lr_patch_size=8, length=12, seed=5)
    batches = [
        [b["hr"] for b in training_loader(patches, batch_size=3, num_workers=w, persistent_workers=False)]
        for w in (0, 2)
    ]
    assert len(batches[0]) == 4 and all(torch.equal(a, b) for a, b in zip(*batches))


def test_paired_data_keeps_its_own_lr(hr_folder, tmp_path):
    lr_folder = tmp_path / "lr"
    for path in hr_folder.iterdir():
        save_rgb(lr_folder / f"{path.stem}x4.png", 255 - downscale_image(mod_crop(load_rgb(path), SCALE), SCALE))
    paired = load_source(str(hr_folder), split="train", lr_dataset=str(lr_folder), cache_dir=str(tmp_path / "c"))
    write_store(paired, tmp_path / "paired.store", scale=SCALE)
    stored = StorePairs(tmp_path / "paired.store", scale=SCALE)
    np.testing.assert_array_equal(stored.load(2)[1], load_rgb(lr_folder / f"{Path(stored.names[2]).stem}x4.png"))


def test_a_damaged_store_is_named_in_one_line(store, tmp_path):
    damaged = tmp_path / "damaged.store"
    damaged.mkdir()
    for name in ("store.json", "lr.u8"):
        (damaged / name).write_bytes((store / name).read_bytes())
    (damaged / "hr.u8").write_bytes((store / "hr.u8").read_bytes()[:-100])  # a copy cut short
    with pytest.raises(ImageError, match=r"damaged\.store/hr\.u8: .* bytes, but .*store\.json lists .*damaged"):
        StorePairs(damaged, scale=SCALE)
    with pytest.raises(ImageError, match=r"holds x4 pairs, but the scale is 2"):
        StorePairs(store, scale=2)
    (damaged / "store.json").write_text("{not json")
    # Through the training command: one line naming the file, no traceback.
    result = subprocess.run(
        [
            sys.executable,
            "train/run.py",
            "--dataset",
            str(damaged),
            "--steps",
            "1",
            "--output-dir",
            str(damaged.parent / "run"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: {damaged / 'store.json'}: not a readable store index")
    )


def test_writing_is_atomic_and_never_overwrites(source, store, tmp_path, hr_folder):
    with pytest.raises(ValueError, match="already exists"):
        write_store(source, store, scale=SCALE)
    # An unreadable image stops the writing: no store folder appears, and no half-written one is left.
    bad = tmp_path / "bad"
    bad.mkdir()
    for path in hr_folder.iterdir():
        (bad / path.name).write_bytes(path.read_bytes())
    (bad / "img1.png").write_bytes((hr_folder / "img1.png").read_bytes()[:200])
    broken = load_source(str(bad), split="train", cache_dir=str(tmp_path / "c"))
    with pytest.raises(ImageError, match="img1.png"):
        write_store(broken, tmp_path / "bad.store", scale=SCALE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad", "c"]
    # Skipped with skip_corrupt, through the command, in two processes.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "train.data",
            "prepare",
            "--dataset",
            str(bad),
            "--store",
            "--output",
            str(tmp_path / "bad.store"),
            "--skip-corrupt",
            "--num-proc",
            "2",
            "--cache-dir",
            str(tmp_path / "c"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "a decoded store of 3 HR/LR pairs" in result.stdout and "1 unreadable skipped" in result.stdout
    index = json.loads((tmp_path / "bad.store" / "store.json").read_text())
    assert [image["name"] for image in index["images"]] == ["img0.png", "img2.png", "img3.png"]


def idle_decoding_worker(pairs):
    from train.data.store import _start_worker

    _start_worker(pairs)
    time.sleep(120)


def test_a_decoding_worker_ends_on_sigterm(source):
    """Pool.terminate() (on Ctrl-C or an error in `prepare --store --num-proc N`) ends its workers with SIGTERM and
    joins them: a worker that ignored SIGTERM made the command hang at its very end, now and then."""
    pairs = ImagePairs(source, scale=SCALE, label="dataset")
    worker = multiprocessing.get_context("spawn").Process(target=idle_decoding_worker, args=(pairs,))
    worker.start()
    time.sleep(8)  # past the imports and the initializer
    worker.terminate()
    worker.join(timeout=30)
    if worker.exitcode is None:
        worker.kill()
    assert worker.exitcode == -signal.SIGTERM, "a decoding worker ignored SIGTERM"


def report_start_dispositions(queue):  # the first thing a spawned process runs, after its bootstrap imports
    queue.put([signal.getsignal(number) == signal.SIG_IGN for number in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM)])


def test_decoding_workers_start_with_the_terminal_signals_ignored():
    """A Ctrl-C or hang-up to the group while a spawned worker still imports (seconds) was a traceback per worker;
    they start with both ignored, SIGTERM (the pool's way to end them) left as it is, and the parent's handlers
    come back after."""
    from train.data.store import terminal_signals_ignored_by_new_processes

    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    before = signal.getsignal(signal.SIGINT)
    with terminal_signals_ignored_by_new_processes():
        worker = context.Process(target=report_start_dispositions, args=(queue,))
        worker.start()
    assert signal.getsignal(signal.SIGINT) is before
    assert queue.get(timeout=60) == [True, True, False]
    worker.join(timeout=30)


TINY = [
    "--model-overrides",
    "{channels: 8, upsample_channels: 8, num_blocks: 1}",
    "--lr-patch-size",
    "8",
    "--progress",
    "false",
    "--log-every",
    "1",
    "--log-with",
    "none",
    "--num-threads",
    "1",
    "--val-dataset",
    "none",
    "--steps",
    "4",
    "--batch-size",
    "2",
    "--gradient-accumulation-steps",
    "2",
    "--lr",
    "3e-3",
]


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_training_from_the_store_equals_training_from_the_images_and_resumes_exactly(hr_folder, store, tmp_path):
    cache = ["--cache-dir", str(hr_folder.parent / "hf-cache")]
    straight = train_in_process([*TINY, "--dataset", str(hr_folder), *cache, "--output-dir", str(tmp_path / "a")])
    # From the store, with the recipe's sub-image setting (not applicable to a store: ignored), stopped and resumed.
    stopped = train_in_process(
        [
            *TINY,
            "--dataset",
            str(store),
            "--subimage-size",
            "32",
            "--stop-after",
            "2",
            "--output-dir",
            str(tmp_path / "b"),
        ]
    )
    resumed = train_in_process(["--resume", "latest", "--output-dir", str(stopped), "--stop-after", "0"])
    a, b = (load_model(d / "model.safetensors").state_dict() for d in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a), "the same patches, the same updates, to the bit"
    first = json.loads((stopped / "log.jsonl").read_text().splitlines()[0])
    assert first["train_images"] == 4


def test_a_store_of_subimages_keeps_their_names_and_pixels(source, tmp_path):
    from train.data import prepare_subimages

    tiles = prepare_subimages(source, scale=SCALE, size=32, step=32, cache_dir=str(tmp_path / "c"))
    write_store(tiles, tmp_path / "tiles.store", scale=SCALE)
    stored, decoded = StorePairs(tmp_path / "tiles.store", scale=SCALE), ImagePairs(tiles, scale=SCALE)
    assert len(stored) == len(tiles) > len(source) and stored.names[1] == tiles[1]["name"] == "img0_y0_x32"
    for i in (0, len(stored) - 1):
        assert all(np.array_equal(a, b) for a, b in zip(stored.load(i), decoded.load(i)))
        assert stored.load(i)[0].shape == (32, 32, 3) and stored.load(i)[1].shape == (8, 8, 3)


# ---- the index is validated by structure, the data by a checksum per image (docs/reliability.md) -------------


def copy_store(store, folder):
    folder.mkdir()
    for name in ("store.json", "hr.u8", "lr.u8"):
        (folder / name).write_bytes((store / name).read_bytes())
    return folder, json.loads((store / "store.json").read_text())


def edited(store, tmp_path, name, edit):
    folder, index = copy_store(store, tmp_path / name)
    edit(index)
    (folder / "store.json").write_text(json.dumps(index))
    return folder


def test_an_edited_index_is_refused_at_open_naming_the_entry(store, tmp_path):
    def swap_hr(index):  # same byte count, so the files' totals still agree: HR is no longer 4 x LR
        index["images"][1]["hr"] = index["images"][1]["hr"][::-1]

    def overlap(index):
        index["images"][2]["hr_offset"] -= 12

    def beyond(index):  # the last image said to be larger: it would end outside the file
        index["images"][3]["lr"] = [index["images"][3]["lr"][0] + 1, index["images"][3]["lr"][1]]
        index["images"][3]["hr"] = [index["images"][3]["lr"][0] * SCALE, index["images"][3]["lr"][1] * SCALE]

    def no_digest(index):
        del index["images"][0]["lr_sha256"]

    def old(index):  # a store of version 1 (no checksums): prepare it again
        index["version"] = 1

    cases = {
        "misaligned": (
            swap_hr,
            r"image 1 \(img1\.png\): HR 64x80 is not 4 x its LR 20x16: the pair would be misaligned",
        ),
        "overlap": (overlap, r"image 2 \(img2\.png\): hr_offset [\d,]+ overlaps the previous image"),
        "beyond": (beyond, r"hr\.u8: [\d,]+ bytes, but .*store\.json lists [\d,]+ \(the last image would end outside"),
        "no-digest": (no_digest, r"image 0 \(img0\.png\): lacks lr_sha256"),
        "old": (old, r"store version 1, this toolkit reads 2 \(with a checksum per image\); prepare it again"),
    }
    for name, (edit, expected) in cases.items():
        with pytest.raises(ImageError, match=expected):
            StorePairs(edited(store, tmp_path, name, edit), scale=SCALE)
    StorePairs(edited(store, tmp_path, "untouched", lambda index: None), scale=SCALE).load(3)  # the copy is fine


def test_one_flipped_byte_in_the_data_is_named_when_the_image_is_read(store, tmp_path):
    folder, index = copy_store(store, tmp_path / "flipped.store")
    data = bytearray((folder / "hr.u8").read_bytes())
    data[index["images"][2]["hr_offset"] + 5] ^= 1
    (folder / "hr.u8").write_bytes(bytes(data))
    pairs = StorePairs(folder, scale=SCALE)  # the index is intact
    pairs.load(1)
    with pytest.raises(
        ImageError,
        match=rf"^{folder / 'hr.u8'}: image 2 \(img2\.png\): its bytes do not match the "
        r"SHA-256 in .*store\.json: the store is damaged; prepare it again$",
    ):
        pairs.load(2)
    # An index whose HR and LR sizes were both swapped stays 4 x aligned, but the bytes are not those images.
    swapped = edited(
        store,
        tmp_path,
        "swapped",
        lambda index: [index["images"][0].update(hr=index["images"][0]["hr"][::-1], lr=index["images"][0]["lr"][::-1])],
    )
    with pytest.raises(ImageError, match=r"image 0 \(img0\.png\): its bytes do not match"):
        StorePairs(swapped, scale=SCALE).load(0)
    # Through the training command: one line, no traceback, no weights.
    result = subprocess.run(
        [
            sys.executable,
            "train/run.py",
            "--dataset",
            str(folder),
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--lr-patch-size",
            "8",
            "--val-dataset",
            "none",
            "--log-with",
            "none",
            "--progress",
            "false",
            "--output-dir",
            str(tmp_path / "run"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {folder / 'hr.u8'}: image 2 (img2.png)")
    assert not (tmp_path / "run" / "model.safetensors").exists()
