"""Everything read is validated before it is used, and the error names the file and the field: weights metadata as a
schema, tensors (kind, finiteness, integrity), and the same schema for --model-overrides."""

import json
import zipfile
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from sr_models import create_model
from sr_models.registry import check_spec
from sr_models.weights import WeightsError, load_model, read_state_dict, save_weights, tensors_digest
from train.config import ConfigError, load_recipe


def tiny_pan():
    torch.manual_seed(0)
    return create_model("pan", scale=2, channels=4, upsample_channels=4, num_blocks=1)


def write_with_metadata(path, *, model="pan", scale="2", hyperparameters=None, tensors=None, digest=True):
    tensors = tensors if tensors is not None else {k: v.contiguous() for k, v in tiny_pan().state_dict().items()}
    metadata = {
        "format": "sr-toolkit/1",
        "model": model,
        "scale": scale,
        "hyperparameters": json.dumps(hyperparameters or {"channels": 4, "upsample_channels": 4, "num_blocks": 1}),
    }
    if digest:
        metadata["sha256"] = tensors_digest(tensors)
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.mark.parametrize(
    "field, value, message",
    [
        (
            "hyperparameters",
            {"channels": 4, "upsample_channels": 4, "num_blocks": 10**8},
            "num_blocks must be in 0..512, got 100000000",
        ),
        ("hyperparameters", {"channels": 5, "upsample_channels": 4, "num_blocks": 1}, "channels must be even, got 5"),
        ("hyperparameters", {"channels": -4, "upsample_channels": 4, "num_blocks": 1}, "channels must be in 2..1024"),
        (
            "hyperparameters",
            {"channels": "4", "upsample_channels": 4, "num_blocks": 1},
            "channels must be an integer, got '4'",
        ),
        (
            "hyperparameters",
            {"channels": True, "upsample_channels": 4, "num_blocks": 1},
            "channels must be an integer, got True",
        ),
        (
            "hyperparameters",
            {"channels": 4.0, "upsample_channels": 4, "num_blocks": 1},
            "channels must be an integer, got 4.0",
        ),
        ("hyperparameters", {"channels": 4, "width": 4}, "pan has no hyper-parameter width"),
        ("hyperparameters", {"in_channels": 1}, "in_channels must be in 3..3"),
        ("hyperparameters", [4, 4], "hyper-parameters must be a mapping"),
        ("scale", "8", "pan does not support scale 8; valid scales: [2, 3, 4]"),
        ("scale", "x4", "metadata scale must be an integer, got 'x4'"),
        ("model", "edsr", "unknown model 'edsr'"),
    ],
)
def test_weights_metadata_is_a_schema_checked_before_anything_is_built(tmp_path, monkeypatch, field, value, message):
    values = {"model": "pan", "scale": "2", "hyperparameters": None, field: value}
    path = write_with_metadata(tmp_path / "bad.safetensors", **values)
    built = []
    monkeypatch.setattr(torch.nn.Conv2d, "__init__", lambda *a, **k: built.append(1) or None)
    with pytest.raises(
        WeightsError,
        match=f"bad.safetensors: metadata: .*{__import__('re').escape(message)}"
        if field != "scale" or value != "x4"
        else "bad.safetensors: metadata scale must be an integer",
    ):
        load_model(path)
    assert not built, "a layer was built before the metadata was checked"


def test_metadata_that_is_not_json_or_lacks_keys_is_named(tmp_path):
    tensors = {k: v.contiguous() for k, v in tiny_pan().state_dict().items()}
    save_file(
        tensors,
        str(tmp_path / "a.safetensors"),
        metadata={"format": "sr-toolkit/1", "model": "pan", "scale": "2", "hyperparameters": "{channels: 4"},
    )
    with pytest.raises(WeightsError, match="a.safetensors: metadata hyperparameters are not valid JSON"):
        load_model(tmp_path / "a.safetensors")
    save_file(tensors, str(tmp_path / "b.safetensors"), metadata={"format": "sr-toolkit/1", "model": "pan"})
    with pytest.raises(WeightsError, match="b.safetensors: metadata lacks scale, hyperparameters"):
        load_model(tmp_path / "b.safetensors")


def test_model_overrides_obey_the_same_schema_before_a_run_starts():
    with pytest.raises(ConfigError, match="model_overrides: pan num_blocks must be in 0..512, got 100000000"):
        load_recipe("quickstart", model_overrides={"num_blocks": 10**8})
    with pytest.raises(ConfigError, match="pan channels must be even, got 7"):
        load_recipe("quickstart", model_overrides={"channels": 7})
    with pytest.raises(ConfigError, match="srresnet does not support scale 5"):
        load_recipe("quickstart", model="srresnet", scale=5)
    check_spec("srresnet", 8, {"channels": 8, "num_blocks": 0})  # the limits themselves are allowed


def test_overrides_written_without_a_space_after_the_colon_say_why_they_are_unknown():
    """`--model-overrides {channels:8}` is YAML for the key "channels:8" with no value."""
    with pytest.raises(
        ConfigError,
        match=r"no hyper-parameter channels:8 \(YAML needs a space after the colon: "
        r"channels: 8\); valid: channels",
    ):
        load_recipe("quickstart", model_overrides="{channels:8}")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path, bad):
    tensors = {k: v.clone().contiguous() for k, v in tiny_pan().state_dict().items()}
    tensors["tail.weight"][0, 0, 0, 0] = bad
    path = write_with_metadata(tmp_path / "nan.safetensors", tensors=tensors)
    with pytest.raises(WeightsError, match=r"nan.safetensors: tensor tail.weight holds 1 NaN or infinite value"):
        load_model(path)
    torch.save(tensors, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match=r"nan.pth: tensor tail.weight holds 1 NaN"):
        load_model(tmp_path / "nan.pth", name="pan", scale=2, channels=4, upsample_channels=4, num_blocks=1)


def test_weights_of_the_wrong_kind_are_refused(tmp_path):
    tensors = {k: v.clone().contiguous() for k, v in tiny_pan().state_dict().items()}
    tensors["head.weight"] = tensors["head.weight"].to(torch.int32)
    path = write_with_metadata(tmp_path / "int.safetensors", tensors=tensors)
    with pytest.raises(
        WeightsError, match="int.safetensors: tensor head.weight has dtype torch.int32, expected floating"
    ):
        load_model(path)


def test_nan_weights_are_never_written_as_a_model(tmp_path):
    model = tiny_pan()
    with torch.no_grad():
        model.head.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(WeightsError, match="tensor head.weight holds 1 NaN"):
        save_weights(model, tmp_path / "model.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_damaged_bytes_in_our_safetensors_are_detected(tmp_path):
    path = tmp_path / "model.safetensors"
    save_weights(tiny_pan(), path)
    data = bytearray(path.read_bytes())
    data[-3] ^= (
        0x40  # a bit of the last tensor's data: still a valid float, a silently different model without the digest
    )
    path.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="model.safetensors: damaged: the tensor data does not match the digest"):
        load_model(path)


def test_damaged_bytes_in_a_zip_pth_are_detected_by_its_crcs(tmp_path):
    path = tmp_path / "model.pth"
    torch.save(tiny_pan().state_dict(), path)
    with zipfile.ZipFile(path) as archive:
        member = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda info: info.file_size)
    data = bytearray(path.read_bytes())
    # The local header (30 bytes + name + its own extra field, which torch pads for alignment) precedes the data.
    name_length, extra_length = (
        int.from_bytes(data[member.header_offset + 26 : member.header_offset + 28], "little"),
        int.from_bytes(data[member.header_offset + 28 : member.header_offset + 30], "little"),
    )
    data[member.header_offset + 30 + name_length + extra_length + 8] ^= 0x40
    path.write_bytes(bytes(data))
    assert torch.load(path, weights_only=True) is not None  # what torch.load alone makes of it: loads
    with pytest.raises(WeightsError, match=f"model.pth: damaged: member {member.filename} fails its CRC check"):
        read_state_dict(path)


@pytest.mark.parametrize(
    "device, message",
    [
        ("gpu0", "not a device"),
        ("tpu", "not a device"),
        ("cuda", "no CUDA GPU is visible"),
        ("cuda:7", "no CUDA GPU is visible"),
        ("mps", "only cpu and cuda"),
    ],
)
def test_a_device_that_cannot_be_used_is_one_line(device, message):
    from train.evaluate import resolve_device

    if torch.cuda.is_available() and message.startswith("no CUDA"):
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match=f"--device '{device}': {message}"):
        resolve_device(device)
    assert resolve_device("cpu") == "cpu"


# ---- folders holding other programs' files: they change nothing that is trained -------------------------------


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_other_programs_files_in_a_photo_folder_change_nothing_that_is_trained(tmp_path, capsys):
    import numpy as np
    from conftest import train_in_process

    from sr_models.images import save_rgb
    from train.data import load_source

    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    (folder / "__MACOSX").mkdir()
    rng = np.random.default_rng(0)
    names = ["a.png", "b.png", "c.png", "more/d.png"]
    for name in names:
        save_rgb(folder / name, rng.integers(0, 256, (48, 40, 3), dtype=np.uint8))
    # What a labelling tool, Windows, macOS and a photo editor leave behind; metadata.jsonl lists one image only.
    (folder / "metadata.jsonl").write_text(json.dumps({"file_name": "a.png", "caption": "a cat"}) + "\n")
    (folder / "metadata.csv").write_text("file_name,label\nb.png,dog\n")
    (folder / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
    (folder / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (folder / "__MACOSX" / "._a.png").write_bytes(b"\0\5\26\7")
    (folder / ".c.png").write_bytes(b"\0\5\26\7")  # an AppleDouble file named like an image
    (folder / "a.xmp").write_text("<x:xmpmeta/>")
    dataset = load_source(str(folder), split="train", cache_dir=str(tmp_path / "hf"))
    assert dataset.column_names == ["hr"]
    assert sorted(str(Path(r["path"]).relative_to(folder)) for r in dataset["hr"]) == names
    note = capsys.readouterr().err
    assert f"note: {folder}: 7 file(s) that are not training images ignored (" in note
    run_dir = train_in_process(
        [
            "--dataset",
            str(folder),
            "--cache-dir",
            str(tmp_path / "hf"),
            "--steps",
            "1",
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
            "--num-threads",
            "1",
            "--model-overrides",
            "{channels: 8, upsample_channels: 8, num_blocks: 1}",
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    start = json.loads((run_dir / "log.jsonl").read_text().splitlines()[0])
    assert start["train_images"] == 4 and start["left_out_files"] == []
