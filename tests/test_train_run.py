"""train/run.py in this process: the default code path, accumulation, exact resume, bf16, schedules, errors.

Tiny PAN (8 channels, one block) on tiny patches so that each run takes a second or two.
"""

import json

import numpy as np
import pytest
import torch
from conftest import reference_lrs, train_config_in_process, train_in_process
from safetensors.torch import load_file
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from sr_models.images import ImageError, save_rgb
from sr_models.weights import load_model, read_spec
from train.config import ConfigError, load_recipe

# One CPU thread: tiny tensors gain nothing from two, and a thread pool waiting on a busy core slows every op.
# repeat_images: tiny photo folders, batches of up to 32.
TINY = dict(
    model_overrides={"channels": 8, "upsample_channels": 8, "num_blocks": 1},
    lr_patch_size=8,
    progress=False,
    log_every=1,
    log_with="none",
    num_threads=1,
    repeat_images=True,
)


pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")


def run(tmp_path, name, data=None, **overrides):
    """The quickstart recipe, TINY, then `overrides`, in tmp_path/name; `data`: a folder of photos, no validation."""
    if data is not None:
        overrides.update(dataset=str(data), val_dataset="none", cache_dir=str(data.parent / "hf-cache"))
    config = load_recipe("quickstart", **{**TINY, "output_dir": str(tmp_path / name), **overrides})
    return train_config_in_process(config)


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def weights(run_dir):
    return {k: v.clone() for k, v in load_model(run_dir / "model.safetensors").state_dict().items()}


def max_difference(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_the_default_quickstart_code_path_for_a_few_steps(tmp_path):
    run_dir = run(tmp_path, "quick", steps=3, warmup_fraction=0.34, batch_size=2, log_with="auto")
    config = load_recipe("quickstart")
    saved = (run_dir / "config.yaml").read_text()
    assert "recipe: quickstart" in saved and "dataset: builtin" in saved
    spec = read_spec(run_dir / "model.safetensors")
    assert spec == {"name": "pan", "scale": config.scale, "channels": 8, "upsample_channels": 8, "num_blocks": 1}
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert set(metrics) == {
        "psnr_y",
        "ssim_y",
        "bicubic_psnr_y",
        "bicubic_ssim_y",
        "steps",
        "samples_per_second",
        "best_psnr_y",
        "best_step",
    }
    # Validated only at the end: the best weights are the final ones (train/feedback.py).
    assert metrics["best_step"] == 3 and metrics["best_psnr_y"] == metrics["psnr_y"]
    assert metrics["steps"] == 3 and 20 < metrics["bicubic_psnr_y"] < 40 and metrics["samples_per_second"] > 0
    log = read_log(run_dir)
    assert log[0]["event"] == "start" and log[0]["num_processes"] == 1 and log[0]["held_out_images"] == 3
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    assert any(r.get("val/psnr_y") == metrics["psnr_y"] for r in log)
    previews = sorted((run_dir / "samples" / "step-00000003").glob("*.png"))
    assert [p.stem for p in previews] == ["astronaut", "chelsea", "coffee"]
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-00000003"]
    # What `tensorboard --logdir runs` shows: the run's scalars and the comparison images (TensorBoard is a dependency).
    events = EventAccumulator(str(run_dir / "tensorboard" / run_dir.name), size_guidance={"images": 0})
    events.Reload()
    assert {"loss", "lr", "val/psnr_y"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("loss")] == [1, 2, 3]
    assert {f"val/{name} (bicubic | model | HR)" for name in ("astronaut", "chelsea", "coffee")} <= set(
        events.Tags()["images"]
    )


def test_accumulating_8x4_is_one_step_on_a_batch_of_32(tmp_path, photos):
    # SGD: its update is the gradient itself, so this compares gradients (Adam would hide their scale). MSE: L1's
    # gradient is a sign, which float-level differences between batch shapes flip where SR and HR nearly agree.
    common = dict(
        steps=2,
        optimizer="sgd",
        lr=0.5,
        scheduler="constant",
        flips=False,
        losses={"mse": 1.0},
        mixed_precision="no",
        grad_clip=0.0,
    )
    accumulated = run(tmp_path, "8x4", photos, **common, batch_size=8, gradient_accumulation_steps=4)
    one_batch = run(tmp_path, "32x1", photos, **common, batch_size=32)
    assert_same_update(weights(accumulated), weights(one_batch), start=weights_at_init())
    losses = [[r["loss"] for r in read_log(d) if "loss" in r] for d in (accumulated, one_batch)]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-6), "step 1: same weights, same 32 patches"
    assert losses[0][1] == pytest.approx(losses[1][1], rel=1e-5)


def assert_same_update(a, b, *, start):
    """Equal updates up to float32 summation order (measured: 4e-6 of the update's size). A wrong accumulation,
    e.g. a 4x scale or one micro-batch's gradient, is off by about the update's size itself."""
    update = max_difference(a, start)
    assert update > 1e-2, "the steps changed the weights"
    assert max_difference(a, b) < 2e-5 * update


def weights_at_init():
    from sr_models import create_model

    torch.manual_seed(0)  # accelerate's set_seed(config.seed=0) before the model is built
    return create_model("pan", scale=4, channels=8, upsample_channels=8, num_blocks=1).state_dict()


def test_resuming_gives_the_weights_and_learning_rates_of_an_uninterrupted_run(tmp_path, photos):
    common = dict(steps=6, warmup_fraction=0.34, batch_size=2, gradient_accumulation_steps=2, ema_decay=0.9, lr=3e-3)
    straight = run(tmp_path, "straight", photos, **common)
    interrupted = run(tmp_path, "resumed", photos, **common, stop_after=3)
    assert not (interrupted / "model.safetensors").exists()
    assert [p.name for p in (interrupted / "checkpoints").iterdir()] == ["step-00000003"]
    resumed = train_in_process(["--resume", "latest", "--output-dir", str(interrupted), "--stop-after", "0"])
    assert resumed == interrupted
    assert max_difference(weights(straight), weights(resumed)) <= 1e-6  # EMA weights: EMA state resumed too
    lrs = lambda d: {r["step"]: r["lr"] for r in read_log(d) if "lr" in r}  # noqa: E731
    assert lrs(straight) == lrs(resumed) and sorted(lrs(resumed)) == [1, 2, 3, 4, 5, 6]
    losses = lambda d: [r["loss"] for r in read_log(d) if "loss" in r][-3:]  # noqa: E731
    assert losses(straight) == losses(resumed), "the resumed run saw the same patches"
    assert read_log(resumed)[-1]["event"] == "end"
    # The final weights are the EMA ones (registered for checkpointing as the second custom object), not the raw.
    checkpoint = resumed / "checkpoints" / "step-00000006"
    ema = torch.load(checkpoint / "custom_checkpoint_1.pkl", weights_only=True)
    raw = load_file(checkpoint / "model.safetensors")
    final = weights(resumed)
    assert all(torch.equal(final[k], ema[f"module.{k}"]) for k in final)
    assert not torch.equal(final["tail.bias"], raw["tail.bias"])


def test_the_scheduler_steps_once_per_optimizer_step_under_accumulation(tmp_path, photos):
    schedule = dict(steps=5, warmup_fraction=0.34, lr=1e-2, min_lr=1e-4, scheduler="cosine")
    run_dir = run(tmp_path, "sched", photos, **schedule, batch_size=1, gradient_accumulation_steps=4)
    logged = [r["lr"] for r in read_log(run_dir) if "lr" in r]
    assert logged == pytest.approx(reference_lrs(load_recipe("quickstart", **schedule)), rel=1e-12)
    assert logged[2] == pytest.approx(1e-2), "peak right after the 2 warm-up steps"


def test_cosine_restarts_cycle_over_the_run():
    config = load_recipe("srresnet_x4_report", steps=8, lr=1.0, min_lr=0.0)
    assert reference_lrs(config) == pytest.approx([1.0, 0.5, 1.0, 0.5, 1.0, 0.5, 1.0, 0.5])


def test_bf16_autocast_trains_on_cpu(tmp_path, photos):
    fp32 = run(tmp_path, "fp32", photos, steps=3, batch_size=4, mixed_precision="no")
    bf16 = run(tmp_path, "bf16", photos, steps=3, batch_size=4, mixed_precision="bf16", channels_last=True)
    assert read_log(bf16)[0]["mixed_precision"] == "bf16"
    a, b = weights(fp32), weights(bf16)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in b.values()), "fp32 master weights"
    # bf16 matmuls round to 8 bits of mantissa: close to the fp32 run, but not equal (autocast was on).
    assert 0 < max_difference(a, b) < 5e-3


def test_srresnet_with_ema_and_gradient_clipping(tmp_path, photos):
    run_dir = run(
        tmp_path,
        "srr",
        photos,
        model="srresnet",
        model_overrides={"channels": 8, "num_blocks": 1},
        steps=2,
        batch_size=2,
        ema_decay=0.5,
        grad_clip=0.1,
        sync_batchnorm=True,
    )
    assert read_spec(run_dir / "model.safetensors")["name"] == "srresnet"


def test_errors_name_the_problem(tmp_path, photos):
    with pytest.raises(ConfigError, match="steps must be an integer"):
        train_in_process(["--steps", "many"])
    broken = tmp_path / "broken"
    broken.mkdir()
    save_rgb(broken / "fine.png", np.zeros((64, 64, 3), dtype=np.uint8))
    (broken / "garbage.png").write_bytes(b"GIF89a not really")
    with pytest.raises(ImageError, match=r"garbage\.png"):
        run(tmp_path, "broken-run", broken, steps=1)
    done = run(tmp_path, "twice", photos, steps=1, batch_size=1)
    with pytest.raises(ConfigError, match="already holds a run"):
        run(tmp_path, done.name, steps=1)


def test_a_data_set_smaller_than_one_micro_batch_is_refused_with_the_numbers(tmp_path, photos):
    # 6 photos, batch 8: one micro-batch would crop some photos twice. Refused before any step is taken.
    with pytest.raises(ImageError, match=r"too small for 1 process\(es\) x batch size 8: 6 usable training image"):
        run(tmp_path, "too-small", photos, steps=1, batch_size=8, repeat_images=False)
    assert not (tmp_path / "too-small" / "checkpoints").exists()
    done = run(tmp_path, "repeats", photos, steps=1, batch_size=8, repeat_images=True)
    assert (done / "model.safetensors").is_file()
