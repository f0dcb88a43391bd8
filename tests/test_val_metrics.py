"""--val-metrics: LPIPS and FID during training, logged with the PSNR figures; missing weights stop the run first."""

import json

import numpy as np
import pytest
import torch

from sr_models.evaluation import perceptual_weights
from sr_models.feature_nets import AlexNetFeatures, FidInceptionV3
from tests.conftest import smooth_photos, train_in_process
from train.config import ConfigError

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
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--preview-images",
    "0",
]


@pytest.fixture
def photos(tmp_path):
    return smooth_photos(tmp_path / "photos", count=4, blocks=(10, 12))  # 80 x 96


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No download, no hub cache, no packaged LPIPS layers: only what $SR_METRICS_WEIGHTS holds."""
    monkeypatch.setattr(perceptual_weights, "hub_dir", lambda: tmp_path / "hub")
    monkeypatch.setattr(perceptual_weights, "_download", lambda weight, folder: None)
    # Seeded stand-ins cannot have the published hash (test_metric_weights_with_a_wrong_hash_are_refused tests it)
    monkeypatch.setattr(perceptual_weights, "check_published_hash", lambda weight, path: None)
    monkeypatch.setattr(perceptual_weights, "_packaged", lambda weight: None)
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv(perceptual_weights.WEIGHTS_ENV, str(folder))
    return folder


def run(tmp_path, photos, metrics):
    return train_in_process(
        [
            "--dataset",
            str(photos),
            "--val-dataset",
            str(photos),
            "--val-metrics",
            metrics,
            "--cache-dir",
            str(tmp_path / "hf"),
            "--output-dir",
            str(tmp_path / "run"),
            *TINY,
        ]
    )


def test_lpips_and_fid_are_logged_with_the_final_validation(tmp_path, photos, offline):
    torch.manual_seed(0)  # weights of the real layout but random values: the plumbing, not the figures
    torch.save(AlexNetFeatures().state_dict(), offline / perceptual_weights.ALEXNET.names[0])
    torch.save(
        {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))},
        offline / perceptual_weights.LPIPS_LINEAR.names[0],
    )
    torch.save(FidInceptionV3().state_dict(), offline / perceptual_weights.INCEPTION.names[0])
    run_dir = run(tmp_path, photos, "psnr,ssim,lpips,fid")
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    final = [r for r in records if "val/psnr_y" in r and "event" not in r][-1]  # not the "best" event line
    assert final["val/lpips"] > 0 and final["val/bicubic_lpips"] > 0
    assert final["val/patches"] == 4 and np.isfinite(final["val/fid"]) and np.isfinite(final["val/bicubic_fid"])


def test_missing_weights_stop_the_run_before_training(tmp_path, photos, offline):
    with pytest.raises(perceptual_weights.MissingWeightsError) as caught:  # train/run.py prints "error: ..." lines
        run(tmp_path, photos, "psnr,lpips")
    lines = str(caught.value).splitlines()
    assert [line.split(" (")[0] for line in lines] == ["alexnet-owt-7be5be79.pth", "alex.pth"]
    assert not list((tmp_path / "run").rglob("model.safetensors"))


def test_unknown_val_metric_is_a_config_error(tmp_path, photos):
    with pytest.raises(ConfigError, match="val_metrics: unknown metric"):
        run(tmp_path, photos, "psnr,niqe")
