"""The fast cases of the fault suite (python -m bench.faults), in this process: every reader decodes odd files
the same way and refuses bad ones with an error naming the file; checkpoints survive kills, full disks and
diverging losses.

The files are made by the suite's makers (bench/faults/makers.py) and the faults inside a process are its
injections (bench/faults/injections.py), so the suite and these tests exercise the same bytes and the same faults.
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import train_in_process

from bench.faults.commands import injected
from bench.faults.makers import FILES, base_image
from sr_models.images import ImageError, load_rgb, save_rgb

REPO = Path(__file__).resolve().parents[1]


NORMALISED = [case for case, (_, _, refused) in FILES.items() if not refused]
REFUSED = [case for case, (_, _, refused) in FILES.items() if refused]


def make(case, folder):
    maker, suffix, _ = FILES[case]
    path = Path(folder) / f"case é{suffix}"
    return path, maker(path)


@pytest.mark.parametrize("case", NORMALISED)
def test_odd_files_read_as_the_same_8_bit_rgb_everywhere(tmp_path, case):
    """load_rgb (evaluate, upscale, validation, training from folders) and the training decoder of image bytes
    (save_to_disk and hub data) give the reference RGB array of the suite's maker."""
    from train.data import decode

    path, expected = make(case, tmp_path)
    assert expected.dtype == np.uint8 and expected.shape[2] == 3
    np.testing.assert_array_equal(load_rgb(path), expected)
    np.testing.assert_array_equal(decode({"bytes": path.read_bytes(), "path": None}, name="row 0"), expected)
    np.testing.assert_array_equal(decode({"bytes": None, "path": str(path)}, name="row 0"), expected)


@pytest.mark.parametrize("case", REFUSED)
def test_bad_files_are_refused_naming_the_file_by_every_reader(tmp_path, case):
    from train.data import decode, image_size

    path, _ = make(case, tmp_path)
    with pytest.raises(ImageError, match=str(path)):
        load_rgb(path)
    with pytest.raises(ImageError, match="row 7"):
        decode({"bytes": path.read_bytes(), "path": None}, name="row 7")
    if case not in ("truncated PNG", "32-bit integer TIFF (beyond 16 bits)"):
        # (a truncated file's header is intact, and 32-bit integers are refused by their values, not their mode:
        # the header check passes, decoding fails, above)
        with pytest.raises(ImageError, match=str(path)):
            image_size({"bytes": None, "path": str(path)}, name=str(path))


def test_a_one_pixel_benchmark_image_is_named(tmp_path):
    from sr_models.evaluation.samples import load_benchmark

    save_rgb(tmp_path / "dot.png", np.zeros((1, 1, 3), np.uint8))
    with pytest.raises(ImageError, match="dot.png"):
        load_benchmark(tmp_path, scale=4)


# ---------------------------------------------------------------------------------------------------------------
# Interrupted runs. A tiny PAN on 8x8 LR patches, one CPU thread, so each in-process run takes a second or two.

# --repeat-images: folders of 1-3 images.
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
    "--batch-size",
    "2",
    "--val-dataset",
    "none",
    "--lr",
    "0.01",
    "--save-every",
    "2",
    "--steps",
    "6",
    "--repeat-images",
    "true",
]


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")  # conftest.py


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    folder = tmp_path_factory.mktemp("photos")
    for seed in range(3):
        save_rgb(folder / f"p{seed}.png", base_image(seed=seed))
    return folder


def train_args(photos, run_dir, *extra):
    return [
        *TINY,
        "--dataset",
        str(photos),
        "--cache-dir",
        str(photos.parent / "hf-cache"),
        "--output-dir",
        str(run_dir),
        *extra,
    ]


def final_weights(run_dir):
    from sr_models.weights import load_model

    return load_model(Path(run_dir) / "model.safetensors").state_dict()


def test_sigkill_while_writing_a_checkpoint_resumes_to_the_same_weights(tmp_path, photos):
    import subprocess
    import sys

    whole = train_in_process(train_args(photos, tmp_path / "whole"))
    killed_dir = tmp_path / "killed"
    # SIGKILL after the step-4 checkpoint's files are written, before its folder is renamed complete
    killed = injected("kill-while-saving", ["train/run.py", *train_args(photos, killed_dir)])
    child = subprocess.run([sys.executable, *killed], cwd=REPO, capture_output=True, text=True, timeout=240)
    assert child.returncode == -9, child.stderr[-2000:]
    names = sorted(p.name for p in (killed_dir / "checkpoints").iterdir())
    assert names == ["step-00000002", "step-00000004.partial"]  # the half-written one is marked as such
    resumed = train_in_process(train_args(photos, killed_dir, "--resume", "latest"))
    assert "resumed_from" in (resumed / "log.jsonl").read_text()
    starts = [line for line in (resumed / "log.jsonl").read_text().splitlines() if '"event": "start"' in line]
    assert "step-00000002" in starts[-1]  # picked the complete checkpoint, not the .partial one
    a, b = final_weights(whole), final_weights(resumed)
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)  # exact on CPU
    assert not list((killed_dir / "checkpoints").glob("*.partial"))  # redone and renamed when step 4 came again


class RunsCode:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['MARKER'], 'w').write('ran')",))


def test_a_checkpoint_holding_pickled_code_is_refused_and_never_runs(tmp_path, photos, monkeypatch):
    import torch

    from train.checkpoint import CheckpointError, write_manifest

    run_dir = train_in_process(train_args(photos, tmp_path / "run", "--stop-after", "2"))
    checkpoint = run_dir / "checkpoints" / "step-00000002"
    custom = sorted(checkpoint.glob("custom_checkpoint_*.pkl"))  # the step counter (register_for_checkpointing)
    assert custom, "the registered objects are what load_state unpickles with weights_only=False"
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    torch.save({"step": RunsCode()}, custom[0])  # torch.load(weights_only=False) would run it
    write_manifest(checkpoint)  # a hostile folder can carry a manifest that matches it: the pickle check still holds
    with pytest.raises(CheckpointError, match=rf"{custom[0].name}: refused: loading it would need more than tensors"):
        train_in_process(train_args(photos, run_dir, "--resume", "latest"))
    assert not marker.exists()


class FakeAccelerator:
    """The part of Accelerator that save_checkpoint uses, writing one file; `full` makes the write fail as a
    full disk does, after part of the checkpoint is on disk."""

    is_main_process = True

    def __init__(self, *, full=False):
        self.full = full

    def wait_for_everyone(self):
        pass

    def save_state(self, folder):
        import errno

        Path(folder).mkdir(parents=True)
        (Path(folder) / "model.safetensors").write_bytes(b"half a checkpoint")
        if self.full:
            raise OSError(errno.ENOSPC, "No space left on device")


def test_a_full_disk_while_saving_keeps_the_previous_checkpoint(tmp_path):
    from train.checkpoint import CheckpointError, save_checkpoint
    from train.config import latest_checkpoint, load_recipe

    config = load_recipe("quickstart")
    good = save_checkpoint(FakeAccelerator(), run_dir=tmp_path, step=2, config=config, keep=2)
    with pytest.raises(CheckpointError, match="step-00000004.*No space left on device.*step-00000002"):
        save_checkpoint(FakeAccelerator(full=True), run_dir=tmp_path, step=4, config=config, keep=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002"]  # no .partial left
    assert latest_checkpoint(tmp_path) == good
    assert (good / "config.yaml").is_file() and (good / "model.safetensors").read_bytes() == b"half a checkpoint"


def test_nonfinite_losses_skip_steps_and_too_many_stop_the_run(tmp_path, photos):
    import json
    import subprocess
    import sys

    import torch

    from train.config import latest_checkpoint

    def nan_at(steps, *args):  # train/run.py with a loss that is NaN at those optimizer steps (1-based)
        return [sys.executable, *injected("nan-loss", [steps, "train/run.py", *args])]

    # Two NaN steps: skipped, counted, logged; the run ends normally with finite weights.
    child = subprocess.run(
        nan_at("3,4", *train_args(photos, tmp_path / "blip")), cwd=REPO, capture_output=True, text=True, timeout=240
    )
    assert child.returncode == 0, child.stderr[-2000:]
    log = [json.loads(line) for line in (tmp_path / "blip" / "log.jsonl").read_text().splitlines()]
    assert max(r.get("nonfinite_steps", 0) for r in log) == 2
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    assert all(torch.isfinite(t).all() for t in final_weights(tmp_path / "blip").values())

    # NaN from step 3 on, 3 allowed in a row: stops at step 5 with one line, the step-2 checkpoint kept.
    run_dir = tmp_path / "diverged"
    child = subprocess.run(
        nan_at("3-", *train_args(photos, run_dir, "--max-nonfinite-steps", "3")),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert child.returncode == 1 and "Traceback" not in child.stderr, child.stderr[-2000:]
    assert "3 optimizer steps in a row" in child.stderr.strip().splitlines()[-1]
    latest = latest_checkpoint(run_dir)
    assert latest is not None and latest.name == "step-00000002"
    assert not (run_dir / "model.safetensors").exists()
