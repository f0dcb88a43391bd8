import pickle
import re

import pytest
import torch
from safetensors.torch import save_file

from sr_models import WeightsError, create_model, load_model, save_weights
from sr_models.weights import read_spec
from tests.conftest import SHARED, needs_shared

TINY_PAN = dict(channels=8, upsample_channels=8, num_blocks=2)


def tiny_pan(scale=4):
    torch.manual_seed(0)
    return create_model("pan", scale=scale, **TINY_PAN).eval()


def same_outputs(a, b):
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        return torch.equal(a(x), b(x))


def test_safetensors_round_trip_rebuilds_the_model_from_metadata(tmp_path):
    model = create_model("srresnet", scale=2, channels=8, num_blocks=1).eval()
    save_weights(model, tmp_path / "m.safetensors")
    assert read_spec(tmp_path / "m.safetensors") == {"name": "srresnet", "scale": 2, "channels": 8, "num_blocks": 1}
    loaded = load_model(tmp_path / "m.safetensors")
    assert loaded.spec == model.spec
    assert same_outputs(model, loaded)
    assert not list(tmp_path.glob("*.partial"))


def test_safetensors_without_our_metadata_are_recognised_from_their_tensors(tmp_path):
    save_file({k: v.contiguous() for k, v in tiny_pan().state_dict().items()}, tmp_path / "foreign.safetensors")
    assert same_outputs(load_model(tmp_path / "foreign.safetensors"), tiny_pan())  # PAN x4 and its widths
    assert same_outputs(load_model(tmp_path / "foreign.safetensors", name="pan", scale=4, **TINY_PAN), tiny_pan())
    save_file({"w": torch.zeros(2)}, tmp_path / "other.safetensors")
    with pytest.raises(WeightsError, match="other.safetensors: cannot tell the architecture.*--model and --scale"):
        load_model(tmp_path / "other.safetensors")


def authors_layout(model):
    """Our PAN state_dict written back in the PAN authors' key names (the inverse of the importer)."""
    renames = [
        (r"^head\.", "conv_first."),
        (r"^trunk\.(\d+)\.plain_branch\.", r"SCPA_trunk.\1.k1.0."),
        (r"^trunk\.(\d+)\.attention_branch\.gate\.", r"SCPA_trunk.\1.PAConv.k2."),
        (r"^trunk\.(\d+)\.attention_branch\.conv\.", r"SCPA_trunk.\1.PAConv.k3."),
        (r"^trunk\.(\d+)\.attention_branch\.out\.", r"SCPA_trunk.\1.PAConv.k4."),
        (r"^trunk\.(\d+)\.merge\.", r"SCPA_trunk.\1.conv3."),
        (r"^upsample\.(\d)\.conv\.", lambda m: f"upconv{int(m[1]) + 1}."),
        (r"^upsample\.(\d)\.attention\.conv\.", lambda m: f"att{int(m[1]) + 1}.conv."),
        (r"^upsample\.(\d)\.refine\.", lambda m: f"HRconv{int(m[1]) + 1}."),
        (r"^tail\.", "conv_last."),
    ]
    state = {}
    for key, tensor in model.state_dict().items():
        split = re.match(r"^trunk\.(\d+)\.split\.weight$", key)
        if split:
            a, b = tensor.chunk(2, dim=0)
            state[f"SCPA_trunk.{split[1]}.conv1_a.weight"], state[f"SCPA_trunk.{split[1]}.conv1_b.weight"] = a, b
            continue
        for pattern, replacement in renames:
            key = re.sub(pattern, replacement, key)
        state[key] = tensor.clone()
    return state


def test_pan_authors_layout_is_imported(tmp_path):
    model = tiny_pan()
    torch.save(authors_layout(model), tmp_path / "authors.pth")
    assert same_outputs(load_model(tmp_path / "authors.pth", name="pan", scale=4, **TINY_PAN), model)


@pytest.mark.parametrize("wrapper", ["params", "params_ema"])
def test_basicsr_containers_and_ddp_prefix_are_unwrapped(tmp_path, wrapper):
    model = tiny_pan()
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    decoy = {k: torch.zeros_like(v) for k, v in state.items()}
    # BasicSR files carry both; the EMA weights are the ones to use when present.
    payload = {wrapper: state, "params": decoy} if wrapper == "params_ema" else {"params": state}
    torch.save(payload, tmp_path / "basicsr.pth")
    assert same_outputs(load_model(tmp_path / "basicsr.pth", name="pan", scale=4, **TINY_PAN), model)


def test_renamed_key_is_named_in_the_error(tmp_path):
    state = tiny_pan().state_dict()
    state["tail.kernel"] = state.pop("tail.weight")
    torch.save(state, tmp_path / "renamed.pth")
    with pytest.raises(WeightsError, match=r"renamed\.pth.*missing: tail\.weight; unexpected: tail\.kernel"):
        load_model(tmp_path / "renamed.pth", name="pan", scale=4, **TINY_PAN)


def test_reshaped_key_is_named_in_the_error(tmp_path):
    state = tiny_pan().state_dict()
    state["head.weight"] = torch.zeros(8, 3, 5, 5)
    torch.save(state, tmp_path / "reshaped.pth")
    with pytest.raises(WeightsError, match=r"wrong shape: head\.weight \(8, 3, 5, 5\) \(model: \(8, 3, 3, 3\)\)"):
        load_model(tmp_path / "reshaped.pth", name="pan", scale=4, **TINY_PAN)


def test_weights_of_another_scale_do_not_fit(tmp_path):
    save_weights(tiny_pan(scale=4), tmp_path / "x4.safetensors")
    with pytest.raises(WeightsError, match="x4.safetensors: holds a pan x4 model, but scale 2 was asked for"):
        load_model(tmp_path / "x4.safetensors", name="pan", scale=2, **TINY_PAN)


class RunsCode:
    def __reduce__(self):
        return (exec, ("open(__import__('os').environ['MARKER'], 'w').write('ran')",))


def test_pickled_code_is_refused_and_never_runs(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv("MARKER", str(marker))
    with open(tmp_path / "evil.pth", "wb") as f:
        pickle.dump({"params": RunsCode()}, f)
    with pytest.raises(WeightsError, match="evil.pth: refused: the file holds pickled objects"):
        load_model(tmp_path / "evil.pth", name="pan", scale=4)
    assert not marker.exists()


def test_missing_and_garbage_files_fail_clearly(tmp_path):
    with pytest.raises(WeightsError, match="nope.safetensors: no such file"):
        load_model(tmp_path / "nope.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(WeightsError, match="junk.safetensors: not a readable safetensors file"):
        load_model(tmp_path / "junk.safetensors")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="junk.pth: "):
        load_model(tmp_path / "junk.pth", name="pan", scale=4)


@needs_shared
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_the_authors_weights_load_strictly(scale):
    model = load_model(SHARED / "weights" / f"PANx{scale}_DF2K.pth", name="pan", scale=scale)
    assert sum(p.numel() for p in model.parameters()) == (272_419 if scale == 4 else 261_403)


def test_a_file_that_is_no_checkpoint_is_named_as_such(tmp_path):
    """A key listing or an image given as weights is not 'pickled code': it is not a checkpoint at all."""
    for name, data in (
        ("keys.txt", b"head.weight\t(40, 3, 3, 3)\n"),
        ("photo.pth", b"\x89PNG\r\n\x1a\n"),
        ("empty.pth", b""),
    ):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(WeightsError, match=f"{name}: not a PyTorch checkpoint"):
            load_model(tmp_path / name)


def test_a_truncated_checkpoint_is_named_damaged(tmp_path):
    torch.save(tiny_pan().state_dict(), tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match="cut.pth: damaged: a zip archive .* whose end is missing"):
        load_model(tmp_path / "cut.pth")
