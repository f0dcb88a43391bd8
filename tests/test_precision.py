"""mixed_precision auto: decided by what the device computes natively (train/precision.py).

The decision is tested with torch's capability checks stubbed (an AMX CPU, an AVX2-only CPU, GPUs with and without
bf16), so every rule runs on every machine; the checks themselves run for real where their result is known.
"""

import json
import subprocess
import sys

import pytest
import yaml
from conftest import REPO, train_in_process

from train import precision as precision_module
from train.config import RECIPES, load_recipe
from train.precision import choose, cpu_bf16, cpu_features

AMX = {"amx": True, "avx512_bf16": True, "kernels": "AVX512", "onednn_bf16": True}  # Sapphire Rapids
AVX512_BF16 = {"amx": False, "avx512_bf16": True, "kernels": "AVX512", "onednn_bf16": True}  # e.g. Zen 4
AVX2_ONLY = {"amx": False, "avx512_bf16": False, "kernels": "AVX2", "onednn_bf16": False}  # e.g. Zen 2/3 EPYC
QUIET = {}  # no launch config: plain `python train/run.py`


@pytest.mark.parametrize("features, expected", [(AMX, "bf16"), (AVX512_BF16, "bf16"), (AVX2_ONLY, "no")])
def test_auto_on_a_cpu_is_bf16_only_where_it_is_native(features, expected):
    chosen = choose("auto", device_type="cpu", environ=QUIET, features=features)
    assert chosen.mixed_precision == expected and chosen.warning is None
    assert chosen.reason.startswith("auto: ")
    assert ("(AMX" in chosen.reason) == features["amx"] and ("no native bf16" in chosen.reason) == (expected == "no")


@pytest.mark.parametrize(
    "cap, why",
    [
        ({"kernels": "AVX2"}, "ATEN_CPU_CAPABILITY"),
        ({"kernels": "DEFAULT"}, "ATEN_CPU_CAPABILITY"),
        ({"onednn_bf16": False}, "ONEDNN_MAX_CPU_ISA"),
    ],
)
def test_an_amx_cpu_whose_kernels_are_capped_emulates_bf16_and_auto_picks_fp32(cap, why):
    chosen = choose("auto", device_type="cpu", environ=QUIET, features={**AMX, **cap})
    assert chosen.mixed_precision == "no" and why in chosen.reason


@pytest.mark.parametrize("has_bf16, expected", [(True, "bf16"), (False, "fp16")])
def test_auto_on_cuda_is_bf16_where_supported_else_fp16(has_bf16, expected):
    chosen = choose("auto", device_type="cuda", environ=QUIET, cuda_has_bf16=has_bf16)
    assert chosen.mixed_precision == expected and chosen.warning is None
    assert ("loss scaling" in chosen.reason) == (expected == "fp16")


def test_cuda_bf16_that_is_only_emulated_does_not_count(monkeypatch):
    asked = {}
    monkeypatch.setattr(precision_module.torch.cuda, "is_bf16_supported", lambda **kw: asked.update(kw) or False)
    assert choose("auto", device_type="cuda", environ=QUIET).mixed_precision == "fp16"
    assert asked == {"including_emulation": False}


@pytest.mark.parametrize("launch", ["bf16", "fp16"])
def test_a_launch_configs_mixed_precision_wins_over_auto(launch):
    chosen = choose("auto", device_type="cuda", environ={"ACCELERATE_MIXED_PRECISION": launch}, cuda_has_bf16=True)
    assert chosen.mixed_precision == launch and "launch config" in chosen.reason


def test_accelerate_launchs_own_no_leaves_auto_to_decide():
    # `accelerate launch` without a config file exports ACCELERATE_MIXED_PRECISION=no: that is silence, not a choice.
    environ = {"ACCELERATE_MIXED_PRECISION": "no"}
    assert choose("auto", device_type="cpu", environ=environ, features=AMX).mixed_precision == "bf16"
    assert choose("auto", device_type="cpu", environ=environ, features=AVX2_ONLY).mixed_precision == "no"


@pytest.mark.parametrize("asked", ["no", "bf16", "fp16"])
def test_an_explicit_precision_is_kept_over_the_launch_config(asked):
    chosen = choose(asked, device_type="cpu", environ={"ACCELERATE_MIXED_PRECISION": "fp16"}, features=AMX)
    assert (
        chosen.mixed_precision == asked
        and chosen.reason.startswith("set by --mixed-precision")
        and chosen.warning is None
    )


@pytest.mark.parametrize("environ", [QUIET, {"ACCELERATE_MIXED_PRECISION": "bf16"}])
def test_bf16_asked_for_on_a_cpu_that_emulates_it_runs_with_one_warning_line(environ):
    requested = "auto" if environ else "bf16"  # by name, or through the launch config
    chosen = choose(requested, device_type="cpu", environ=environ, features=AVX2_ONLY)
    assert chosen.mixed_precision == "bf16"
    assert chosen.warning.startswith("warning: bf16 is emulated here") and "\n" not in chosen.warning
    assert "no native bf16" in chosen.warning and "emulated" in chosen.reason


def test_this_machines_checks_are_read_as_booleans_and_a_capability():
    features = cpu_features()
    assert set(features) == set(AMX)
    assert all(isinstance(features[k], bool) for k in ("amx", "avx512_bf16", "onednn_bf16"))
    assert isinstance(features["kernels"], str) and features["kernels"]


def test_capping_torchs_kernels_at_avx2_turns_auto_to_fp32_on_any_cpu():
    # True on an AVX2-only CPU (no bf16 units) and on an AMX one (kernels capped): the emulation the docs' AVX2
    # figures were measured under.
    script = "from train.precision import choose; c = choose('auto', device_type='cpu', environ={}); "
    script += "print(c.mixed_precision)"
    env = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.strip() == "no"


@pytest.mark.parametrize(
    "cap, admits",
    [
        (None, True),
        ("AVX2", False),
        ("AVX512_CORE", False),
        ("avx512_core_vnni", False),
        ("AVX512_CORE_BF16", True),
        ("AVX512_CORE_AMX", True),
        ("ALL", True),
    ],
)
def test_a_onednn_cap_below_bf16_counts_as_emulated_bf16(cap, admits):
    """ONEDNN_MAX_CPU_ISA=AVX512_CORE (Skylake-class AVX-512) leaves oneDNN's own bf16 report True while its
    kernels emulate bf16; the cap itself decides."""
    from train.precision import onednn_cap_admits_bf16

    assert onednn_cap_admits_bf16({} if cap is None else {"ONEDNN_MAX_CPU_ISA": cap}) is admits
    if cap is not None:
        assert onednn_cap_admits_bf16({"DNNL_MAX_CPU_ISA": cap}) is admits


def test_capping_onednn_below_bf16_turns_auto_to_fp32_on_any_cpu():
    script = "from train.precision import choose; c = choose('auto', device_type='cpu', environ={}); "
    script += "print(c.mixed_precision, c.reason)"
    env = {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True
    )
    assert result.stdout.split()[0] == "no", result.stdout


def test_the_cpu_bf16_rule_names_the_units_it_found():
    assert cpu_bf16(AMX) == (True, "native bf16 on this CPU (AMX and AVX512-BF16)")
    assert cpu_bf16(AVX512_BF16) == (True, "native bf16 on this CPU (AVX512-BF16)")
    assert cpu_bf16(AVX2_ONLY)[0] is False


# ---- recipes and launch configs ---------------------------------------------------------------------------------


def test_every_recipe_leaves_the_precision_to_the_machine():
    for path in sorted(RECIPES.glob("*.yaml")):
        assert load_recipe(path.stem).mixed_precision == "auto", f"{path.name} fixes a precision"


def test_launch_configs_fix_a_precision_only_where_their_name_says_so():
    for path in sorted((REPO / "launch_configs").glob("*.yaml")):
        fixed = yaml.safe_load(path.read_text()).get("mixed_precision")
        assert fixed == ("fp16" if path.stem.endswith("_fp16") else None), f"{path.name}: mixed_precision {fixed!r}"


# ---- in a run: the start line and log.jsonl ---------------------------------------------------------------------

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
    "1",
    "--batch-size",
    "2",
    "--val-dataset",
    "none",
]


def start_event(run_dir):
    return json.loads((run_dir / "log.jsonl").read_text().splitlines()[0])


@pytest.mark.usefixtures("fresh_accelerate_state")
@pytest.mark.parametrize("features, expected", [(AMX, "bf16"), (AVX2_ONLY, "no")])
def test_a_run_logs_the_choice_and_its_reason(tmp_path, photos, monkeypatch, capsys, features, expected):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: features)
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    data = ["--dataset", str(photos), "--cache-dir", str(photos.parent / "hf-cache")]
    run_dir = train_in_process([*TINY, *data, "--output-dir", str(tmp_path / "run")])
    start = start_event(run_dir)
    reason = choose("auto", device_type="cpu", environ={}, features=features).reason
    assert start["mixed_precision"] == expected and start["mixed_precision_reason"] == reason
    assert f"mixed precision {expected} ({reason})" in capsys.readouterr().out


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_bf16_asked_for_on_an_emulating_cpu_trains_and_says_so_once(tmp_path, photos, monkeypatch, capsys):
    monkeypatch.setattr(precision_module, "cpu_features", lambda: AVX2_ONLY)
    data = ["--dataset", str(photos), "--cache-dir", str(photos.parent / "hf-cache")]
    run_dir = train_in_process([*TINY, *data, "--mixed-precision", "bf16", "--output-dir", str(tmp_path / "run")])
    assert start_event(run_dir)["mixed_precision"] == "bf16" and (run_dir / "model.safetensors").is_file()
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if line.startswith("warning: bf16 is emulated here")] == [
        choose("bf16", device_type="cpu", environ={}, features=AVX2_ONLY).warning
    ]
