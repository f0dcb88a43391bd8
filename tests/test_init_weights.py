"""Fine-tuning (--init-weights) and the recognition of foreign checkpoints from their tensors."""

import json

import pytest
import torch
import yaml
from conftest import SHARED, needs_shared, train_in_process

from sr_models import create_model, list_models, save_weights
from sr_models.registry import architecture
from sr_models.weights import WeightsError, checkpoint_spec, load_model
from train.config import load_recipe
from train.data import training_patches
from train.init_weights import init_weights

pytestmark = pytest.mark.usefixtures("fresh_accelerate_state")

AUTHORS_X4 = SHARED / "weights" / "PANx4_DF2K.pth"
TINY = {
    name: {**architecture(name).tiny, "num_blocks": 2} for name in list_models()
}  # 2 blocks: counted, not defaulted
QUIET = ["--log-with", "none", "--progress", "false", "--num-threads", "1", "--log-every", "1"]


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


# ---- recognition: one rule for evaluate, export and --init-weights ---------------------------------------------


@pytest.mark.parametrize("name", list_models())
def test_a_foreign_checkpoint_tells_its_architecture_scale_and_width(tmp_path, name):
    for scale in architecture(name).scales:
        model = create_model(name, scale=scale, **TINY[name])
        path = tmp_path / f"{name}x{scale}.pth"
        torch.save({"params": model.state_dict()}, path)  # BasicSR's container
        if name == "pan" and scale in (2, 3):  # identical tensors at x2 and x3: the file cannot tell
            with pytest.raises(WeightsError, match="scale 2 or 3: their tensors are identical.*pass --scale"):
                checkpoint_spec(path)
            assert checkpoint_spec(path, scale=scale) == {"name": name, "scale": scale, **TINY[name]}
            continue
        assert checkpoint_spec(path) == {"name": name, "scale": scale, **TINY[name]}
        loaded = load_model(path)  # no name, no scale
        assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())


def test_a_checkpoint_that_contradicts_the_asked_model_or_scale_is_named(tmp_path):
    path = tmp_path / "srresnet.pth"
    torch.save(create_model("srresnet", scale=4, **TINY["srresnet"]).state_dict(), path)
    with pytest.raises(WeightsError, match="holds a srresnet x4 model, not pan"):
        checkpoint_spec(path, name="pan")
    with pytest.raises(WeightsError, match="holds a srresnet x4 model, but scale 2 was asked for"):
        checkpoint_spec(path, scale=2)
    torch.save({"encoder.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(WeightsError, match=r"cannot tell the architecture .*encoder\.weight.*pass --model and --scale"):
        checkpoint_spec(tmp_path / "other.pth")


@needs_shared
def test_the_authors_x4_file_is_recognised_and_x2_x3_ask_for_the_scale():
    assert checkpoint_spec(AUTHORS_X4) == {"name": "pan", "scale": 4}
    for scale in (2, 3):
        path = SHARED / "weights" / f"PANx{scale}_DF2K.pth"
        with pytest.raises(WeightsError, match="pass --scale"):
            checkpoint_spec(path)
        assert checkpoint_spec(path, scale=scale) == {"name": "pan", "scale": scale}


# ---- --init-weights ----------------------------------------------------------------------------------------------


def test_strict_init_loads_every_tensor_and_refuses_another_scale(tmp_path):
    source = create_model("pan", scale=4, **TINY["pan"])
    torch.nn.init.normal_(source.tail.weight)  # not the seed's initial values
    save_weights(source, tmp_path / "x4.safetensors")
    model = create_model("pan", scale=4, **TINY["pan"])
    summary = init_weights(model, tmp_path / "x4.safetensors")
    assert summary["loaded"] == len(source.state_dict()) and not summary["fresh"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in source.state_dict().items())
    # x3 has the tensors of PAN x2, not x4; and x2's tensors are x3's: the metadata's scale decides.
    for scale, problem in ((3, "but scale 3 was asked for"), (2, "but scale 2 was asked for")):
        with pytest.raises(WeightsError, match=f"{problem}.*--init-strict false"):
            init_weights(create_model("pan", scale=scale, **TINY["pan"]), tmp_path / "x4.safetensors")


def test_non_strict_init_loads_what_fits_and_names_the_rest(tmp_path):
    # SRResNet x3 from x4: the head and trunk fit; x3's single r=3 stage (576 channels) starts fresh, and x4's
    # two r=2 stages are left out.
    source = create_model("srresnet", scale=4, **TINY["srresnet"])
    torch.save(source.state_dict(), tmp_path / "x4.pth")
    model = create_model("srresnet", scale=3, **TINY["srresnet"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = init_weights(model, tmp_path / "x4.pth", strict=False)
    assert summary["fresh"] == ["upsample.0.0.weight", "upsample.0.0.bias"]
    assert summary["left_out"] == [
        "upsample.0.0.weight (32, 8, 3, 3) (model: (72, 8, 3, 3))",
        "upsample.0.0.bias (32,) (model: (72,))",
        "upsample.1.0.weight (32, 8, 3, 3) (not in the model)",
        "upsample.1.0.bias (32,) (not in the model)",
        "upsample.1.2.weight (1,) (not in the model)",
    ]
    for key, value in model.state_dict().items():
        expected = before[key] if key in summary["fresh"] else source.state_dict()[key]
        assert torch.equal(value, expected), key
    assert summary["loaded"] == len(model.state_dict()) - 2


def test_a_run_from_init_weights_starts_fresh_and_records_the_source(tmp_path, capsys):
    source = create_model("pan", scale=4, **TINY["pan"])
    torch.nn.init.normal_(source.tail.weight)
    save_weights(source, tmp_path / "start.safetensors")
    # lr 0: Adam moves nothing, so the final weights are the initial ones, bit for bit.
    run_dir = train_in_process(
        [
            *QUIET,
            "--model-overrides",
            json.dumps(TINY["pan"]),
            "--lr-patch-size",
            "8",
            "--batch-size",
            "2",
            "--steps",
            "2",
            "--lr",
            "0",
            "--min-lr",
            "0",
            "--warmup-fraction",
            "0",
            "--val-dataset",
            "none",
            "--init-weights",
            str(tmp_path / "start.safetensors"),
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    final = load_model(run_dir / "model.safetensors").state_dict()
    assert all(torch.equal(final[k], v) for k, v in source.state_dict().items())
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["init_weights"] == str(tmp_path / "start.safetensors")
    start = read_log(run_dir)[0]
    assert start["event"] == "start" and start["step"] == 0
    assert start["init_weights"] == str(tmp_path / "start.safetensors") and start["loaded"] == len(final)
    assert (
        f"initial weights: {tmp_path / 'start.safetensors'} ({len(final)} tensors loaded, strict)"
        in capsys.readouterr().out
    )


@needs_shared
def test_fine_tuning_the_authors_x4_weights_lines_up_with_their_training(tmp_path):
    """A few steps at a small learning rate keep the authors' Set5 PSNR_Y (32.1311) within 0.01 dB, and the first
    logged loss is the L1 of their model on the same patches, computed here apart from the trainer: our patches,
    LR, value range and loss are what their weights were trained on."""
    overrides = {
        "steps": 3,
        "batch_size": 4,
        "lr_patch_size": 24,
        "lr": 1e-5,
        "min_lr": 1e-7,
        "warmup_fraction": 0.0,
        "grad_clip": 0.0,
        "mixed_precision": "no",
        "channels_last": False,
        "val_dataset": str(SHARED / "Set5"),
    }
    argv = [*QUIET, "--init-weights", str(AUTHORS_X4), "--output-dir", str(tmp_path / "run")]
    for key, value in overrides.items():
        argv += [f"--{key}", str(value)]
    run_dir = train_in_process(argv)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["psnr_y"] == pytest.approx(32.1311, abs=0.01)
    first_loss = next(line["loss"] for line in read_log(run_dir) if line.get("step") == 1 and "loss" in line)

    # The same patches through the data API (a pure function of (seed, index)), the authors' model loaded by name.
    config = load_recipe("quickstart", **overrides)
    patches, _ = training_patches(config, length=config.batch_size)
    batch = [patches[i] for i in range(config.batch_size)]
    lr = torch.stack([sample["lr"] for sample in batch]).double() / 255  # (4, 3, 24, 24) in [0, 1]
    hr = torch.stack([sample["hr"] for sample in batch]).double() / 255  # (4, 3, 96, 96)
    authors = load_model(AUTHORS_X4, name="pan", scale=4).double()  # PAN has no dropout or BatchNorm
    with torch.no_grad():
        expected = (authors(lr) - hr).abs().mean().item()
    assert first_loss == pytest.approx(expected, rel=1e-5)


def test_export_recognises_a_foreign_checkpoint_without_flags(tmp_path):
    from export.to_onnx import main as export_main

    model = create_model("srresnet", scale=2, **TINY["srresnet"])
    torch.save(model.state_dict(), tmp_path / "srresnet.pth")
    export_main(["--weights", str(tmp_path / "srresnet.pth"), "--output", str(tmp_path / "m.onnx"), "--no-parity"])
    import onnx

    props = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert (props["model"], props["scale"]) == ("srresnet", "2")
    torch.save(create_model("pan", scale=3, **TINY["pan"]).state_dict(), tmp_path / "pan.pth")
    with pytest.raises(SystemExit, match="pan.pth: a pan checkpoint of scale 2 or 3.*pass --scale"):
        export_main(["--weights", str(tmp_path / "pan.pth"), "--output", str(tmp_path / "p.onnx"), "--no-parity"])


# ---- every tensor loaded is checked, strict or not (docs/reliability.md, "Validate structure") ----------------


@pytest.mark.parametrize("strict", [True, False])
@pytest.mark.parametrize("wrapper", [None, "params", "params_ema"])
def test_init_weights_holding_nan_or_integers_are_refused_strict_or_not(tmp_path, strict, wrapper):
    source = create_model("pan", scale=4, **TINY["pan"]).state_dict()
    model = create_model("pan", scale=4, **TINY["pan"])
    wrap = (lambda state: state) if wrapper is None else (lambda state: {wrapper: state, "iter": 7})
    good = tmp_path / "good.pth"
    torch.save(wrap(source), good)
    assert init_weights(model, good, strict=strict)["loaded"] == len(source)  # the wrappers keep working
    model = create_model("pan", scale=4, **TINY["pan"])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for label, broken, expected in (
        (
            "nan",
            {**source, "tail.weight": source["tail.weight"].clone().fill_(float("nan"))},
            "tensor tail.weight holds .* NaN or infinite",
        ),
        (
            "int",
            {**source, "head.weight": source["head.weight"].to(torch.int32)},
            "tensor head.weight has dtype torch.int32, expected floating-point",
        ),
    ):
        path = tmp_path / f"{label}.pth"
        torch.save(wrap(broken), path)
        with pytest.raises(WeightsError, match=f"^{path}: {expected}"):
            init_weights(model, path, strict=strict)
        # nothing was loaded: the model keeps its fresh values
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_pth_with_non_string_keys_is_one_line(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({0: torch.zeros(3), "head.weight": torch.zeros(3)}, path)
    model = create_model("pan", scale=4, **TINY["pan"])
    for strict in (True, False):
        with pytest.raises(
            WeightsError,
            match=rf"^{path}: expected tensor names \(strings\) as keys, found 1 other "
            r"key\(s\), e.g. 0 \(int\)",
        ):
            init_weights(model, path, strict=strict)
    with pytest.raises(WeightsError, match="expected tensor names"):
        load_model(path, name="pan", scale=4)
