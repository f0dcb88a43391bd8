"""What a run shows while it trains: validation lines, the best weights, log cadence, workers, left-out files."""

import json

import numpy as np
import pytest
from conftest import train_in_process
from safetensors import safe_open

from sr_models.evaluation.scoring import TorchUpscaler, score
from sr_models.images import save_rgb
from sr_models.weights import load_model
from train.config import load_recipe
from train.feedback import cap_workers, log_interval
from train.validation import LABEL_HEIGHT, comparison

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

TINY = [
    "--model-overrides",
    "{channels: 8, upsample_channels: 8, num_blocks: 1}",
    "--lr-patch-size",
    "8",
    "--progress",
    "false",
    "--log-with",
    "none",
    "--num-threads",
    "1",
    "--repeat-images",
    "true",
    "--batch-size",
    "2",
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Training photos (one of them too small for the patch) and two validation folders."""
    root = tmp_path_factory.mktemp("feedback")
    rng = np.random.default_rng(1)
    for folder, count, size in (("train", 4, (12, 14)), ("valA", 2, (10, 12)), ("valB", 3, (9, 11))):
        (root / folder).mkdir()
        for i in range(count):
            small = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
            save_rgb(root / folder / f"{folder[-1]}img{i}.png", np.kron(small, np.ones((8, 8, 1), dtype=np.uint8)))
    save_rgb(root / "train" / "tiny.png", np.zeros((16, 16, 3), dtype=np.uint8))  # LR 4x4 < patch 8
    return root


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def test_each_validation_prints_a_line_per_set_and_keeps_the_best_weights(data, tmp_path, capsys):
    run_dir = train_in_process(
        [
            *TINY,
            "--dataset",
            str(data / "train"),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--val-dataset",
            f"{data / 'valA'},{data / 'valB'}",
            "--val-every",
            "2",
            "--steps",
            "6",
            "--lr",
            "3e-3",
            "--small-images",
            "skip",
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    out = capsys.readouterr().out
    log = read_log(run_dir)
    vals = {}  # step -> every validation figure of that step (one log line per set)
    for record in log:
        if any(key.startswith("val/") for key in record) and record.get("event") != "best":
            vals.setdefault(record["step"], {}).update(record)
    assert sorted(vals) == [2, 4, 6]
    # One line per validation and set, with the figures that went to the log.
    for step, record in vals.items():
        gain = record["val/psnr_y"] - record["val/bicubic_psnr_y"]
        assert (
            f"step {step} | valA: PSNR_Y {record['val/psnr_y']:.4f} dB, SSIM_Y {record['val/ssim_y']:.4f} | "
            f"{gain:+.2f} dB over bicubic | best " in out
        )
        assert f"step {step} | valB: PSNR_Y {record['val/valB/psnr_y']:.4f} dB" in out
    best_step = max(vals, key=lambda s: (vals[s]["val/psnr_y"], -s))
    assert (
        f"step 6 | valA: PSNR_Y {vals[6]['val/psnr_y']:.4f} dB, SSIM_Y {vals[6]['val/ssim_y']:.4f} | "
        f"{vals[6]['val/psnr_y'] - vals[6]['val/bicubic_psnr_y']:+.2f} dB over bicubic | "
        f"best {vals[best_step]['val/psnr_y']:.4f} dB at step {best_step}" in out
    )
    # model_best.safetensors: the weights of that step, which score what the log says on valA.
    with safe_open(str(run_dir / "model_best.safetensors"), framework="pt") as f:
        assert int(f.metadata()["step"]) == best_step
    from train.data import validation_sets

    config = load_recipe("quickstart", val_dataset=str(data / "valA"))
    [samples] = validation_sets(config).values()
    rescored = score(TorchUpscaler(load_model(run_dir / "model_best.safetensors")), samples, scale=4, progress=False)
    assert rescored["mean"]["psnr_y"] == pytest.approx(vals[best_step]["val/psnr_y"], abs=1e-9)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_step"] == best_step and set(metrics["val_sets"]) == {"valA", "valB"}
    assert metrics["val_sets"]["valB"]["psnr_y"] == vals[6]["val/valB/psnr_y"]
    # The file left out by --small-images skip is named on the console and in the log.
    assert "left out 1 image(s) smaller than the patch (--small-images skip): " in out and "tiny.png" in out
    assert [f.rsplit("/", 1)[-1] for f in log[0]["left_out_files"]] == ["tiny.png"]
    assert log[0]["val_sets"] == ["valA", "valB"] and log[0]["held_out_images"] == 5
    assert (run_dir / "samples" / "step-00000002" / "valB-Bimg0.png").is_file()


def test_log_cadence_shows_a_short_run():
    assert log_interval(load_recipe("pan_x4_report", steps=100_000)) == 100  # the recipe's own cadence
    assert log_interval(load_recipe("pan_x4_report", steps=200)) == 10  # at least 20 lines a run
    assert log_interval(load_recipe("pan_x4_report", steps=7)) == 1


def test_workers_are_capped_to_the_cores_once():
    assert cap_workers(4, processes=1, cores=2) == (
        2,
        "note: --num-workers 4 lowered to 2 per process (2 CPU core(s), 1 process(es))",
    )
    assert cap_workers(4, processes=2, cores=2)[0] == 1
    assert cap_workers(0, processes=2, cores=2) == (0, None) and cap_workers(2, processes=1, cores=8) == (2, None)


def test_comparison_images_name_their_panels():
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    lr = hr[::4, ::4]
    panel = comparison(lr, hr, hr, scale=4)
    assert panel.shape == (LABEL_HEIGHT + 64, 3 * 80 + 2 * 4, 3)
    np.testing.assert_array_equal(panel[LABEL_HEIGHT:, 84:164], hr)  # the model panel, under its title
    for left in (0, 84, 168):  # dark text over each of the three panels, nothing but white between them
        assert (panel[:LABEL_HEIGHT, left : left + 80] < 128).any()
    assert (panel[:LABEL_HEIGHT, 80:84] == 255).all()


def test_a_pytorch_weights_file_given_to_deployment_says_how_to_export_it(tmp_path):
    from export.runtime import OnnxModelError, check_model

    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(
        OnnxModelError,
        match=r"model\.safetensors: PyTorch weights, not an ONNX model; export them "
        r"first: python export/to_onnx.py --weights .*model\.safetensors --output .*model\.onnx",
    ):
        check_model(tmp_path / "model.safetensors")


def test_the_best_weights_span_a_resumed_run(data, tmp_path):
    common = [
        *TINY,
        "--dataset",
        str(data / "train"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--small-images",
        "skip",
        "--val-dataset",
        str(data / "valA"),
        "--val-every",
        "1",
        "--lr",
        "3e-3",
        "--output-dir",
        str(tmp_path / "run"),
    ]
    train_in_process([*common, "--steps", "4", "--stop-after", "2"])
    run_dir = train_in_process([*common, "--steps", "4", "--resume", "latest"])
    vals = [r for r in read_log(run_dir) if "val/psnr_y" in r and r.get("event") != "best"]
    assert [r["step"] for r in vals] == [1, 2, 3, 4]  # every step (the last one: the saved file, at the end)
    best = max(vals, key=lambda r: (r["val/psnr_y"], -r["step"]))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert (metrics["best_step"], metrics["best_psnr_y"]) == (best["step"], best["val/psnr_y"])
    with safe_open(str(run_dir / "model_best.safetensors"), framework="pt") as f:
        assert int(f.metadata()["step"]) == best["step"]


def test_log_with_tensorboard_when_it_is_missing_is_one_clear_line(monkeypatch):
    import train.run
    from train.config import ConfigError

    monkeypatch.setattr(train.run, "is_tensorboard_available", lambda: False)
    with pytest.raises(
        ConfigError,
        match="--log-with tensorboard: TensorBoard is not installed; pip install tensorboard, or pass --log-with none",
    ):
        train.run.trackers("tensorboard")
    assert train.run.trackers("auto") is None  # auto: quietly without
