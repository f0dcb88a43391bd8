"""bench/gpu_check.sh, shrunk to the CPU (--cpu), end to end: the GPU machine's one prepared command cannot rot.

What it checks there is real on the CPU too: launched training (bf16 autocast, asked for by name) that stops,
resumes and lowers its loss, ONNX export with parity, toolkit and plain loops of every non-compiled variant, FLOPs
counted, and 1- and 2-process DDP scaling in the precision auto picks. (Speed and memory figures are not asserted:
tests are never timed.) It runs under $PYTHON, the interpreter of the tests, whatever `python` PATH finds first.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from train.precision import choose

REPO = Path(__file__).resolve().parents[1]


def interpreters_without_modules(folder):
    """A folder of `python` and `python3` that import nothing: first on PATH, they stand for a venv not activated
    (PATH's Python is another one). The script must use $PYTHON, the interpreter the tests run in."""
    folder.mkdir()
    for name in ("python", "python3"):
        fake = folder / name
        fake.write_text("#!/bin/sh\nexit 1\n")
        fake.chmod(0o755)
    return f"{folder}:{os.environ['PATH']}"


def test_the_gpu_check_runs_shrunk_on_the_cpu(tmp_path):
    env = {
        **os.environ,
        "OUT": str(tmp_path / "out"),
        "PYTHONWARNINGS": "ignore",
        "PYTHON": sys.executable,
        "PATH": interpreters_without_modules(tmp_path / "not-this-python"),
    }
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh"), "--cpu", "--workdir", str(tmp_path / "w")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert figures["skipped"] == [], figures["skipped"]
    correctness = {c["precision"]: c for c in figures["correctness"]}
    assert set(correctness) == {"bf16", "fp16"}
    assert correctness["bf16"]["mixed_precision"] == "bf16" and correctness["bf16"]["ok"]
    assert correctness["fp16"]["ok"] and correctness["bf16"]["resumed_at"] == 4
    runs = {(r["model"], r["variant"]) for r in figures["throughput"]}
    assert runs == {(m, v) for m in ("pan", "srresnet") for v in ("eager", "bf16", "bf16_channels_last")}
    assert all(r["toolkit_samples_per_s"] > 0 and r["plain_samples_per_s"] > 0 for r in figures["throughput"])
    # FLOPs of the tiny PAN (8 channels, 1 block) per LR 16 sample: counted, not guessed; the forward of the
    # 3->8 head conv alone is 2 * 16 * 16 * 8 * 3 * 3 * 3 = 0.11 MFLOP, and backward roughly doubles the total.
    assert 3 * 0.11e6 < figures["flops"]["pan"]["flops_per_sample"] < 1e8
    degrade = figures["degrade"]  # the Degrader timed on the device, its share of the measured PAN step
    assert degrade["ms_per_batch"] > 0 and degrade["hr_side"] == 64 and 0 < degrade["share_of_step"] < 1
    assert [s["processes"] for s in figures["cpu_scaling"]] == [1, 2]
    native = choose("auto", device_type="cpu", environ={}).mixed_precision  # the quickstart recipe says auto
    assert {s["mixed_precision"] for s in figures["cpu_scaling"]} == {native}
    table = result.stdout[result.stdout.index("=" * 100) :]
    assert "correctness" in table and "cpu scaling" in table and "gpu_check on CPU only" in table


def test_a_missing_module_stops_the_gpu_check_at_once_with_the_wheel_instructions(tmp_path):
    fake = tmp_path / "venv-python"  # a python that has no `datasets`; PATH's own python is not asked
    fake.write_text('#!/bin/sh\ncase "$2" in "import datasets") exit 1;; esac\nexit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "PYTHON": str(fake)}
    result = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_check.sh")], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 2
    assert (
        f"'datasets' is not installed for {fake}" in result.stderr
        and "pip install --no-index --find-links wheels datasets" in result.stderr
    )


@pytest.mark.skipif(not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc")
def test_memory_figures_read_this_process():
    import sys

    sys.path.insert(0, str(REPO / "bench"))
    from train_speed import memory_kib

    figures = memory_kib()
    assert 0 < figures["private"] and 0 < figures["pss"] <= figures["rss"]
