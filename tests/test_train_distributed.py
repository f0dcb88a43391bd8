"""Two processes through `accelerate launch --config_file launch_configs/cpu_ddp.yaml` (DDP over gloo, CPU).

One launch, checked four ways: it really ran 2 processes, both ended with the same weights, the learning rate
was stepped once per optimizer step (2 processes x accumulation 4), and 2 x 4 x 4 patches make the same update
as one process on a batch of 32. A second launch reads the same images from a decoded store (the same weights,
to the bit). A third makes the loss NaN in one process only: both skip that step, and nobody hangs.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import reference_lrs, smooth_photos, train_in_process
from safetensors.torch import load_file

from sr_models.weights import load_model
from train.config import load_recipe
from train.data import load_source, write_store

REPO = Path(__file__).resolve().parents[1]
ARGS = [
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
    "--val-dataset",
    "none",
    "--steps",
    "3",
    "--optimizer",
    "sgd",
    "--lr",
    "0.2",
    "--scheduler",
    "cosine",
    "--warmup-fraction",
    "0.34",
    "--min-lr",
    "0.02",
    "--flips",
    "false",
    "--num-threads",
    "1",
    "--loss",
    "mse",
    "--mixed-precision",
    "no",
    "--channels-last",
    "false",
    "--grad-clip",
    "0",
    "--repeat-images",
    "true",
]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return smooth_photos(tmp_path_factory.mktemp("photos"), count=5, blocks=(12, 12), seed=1)


def read_log(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def weights(run_dir):
    return load_model(run_dir / "model.safetensors").state_dict()


def launch(script, *args):
    """`accelerate launch` 2 CPU processes (DDP over gloo) of `script` with `args`; the finished process."""
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        str(REPO / "launch_configs" / "cpu_ddp.yaml"),
        "--main_process_port",
        str(free_port()),
        str(script),
        *args,
    ]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(REPO)}
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=240, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_over_gloo(tmp_path, photos):
    run_dir = tmp_path / "ddp"
    data = ["--dataset", str(photos), "--cache-dir", str(tmp_path / "hf-cache")]
    ddp = [*ARGS, "--batch-size", "4", "--gradient-accumulation-steps", "4"]
    launch(REPO / "train" / "run.py", *ddp, *data, "--output-dir", str(run_dir))

    log = read_log(run_dir)
    start, end = log[0], log[-1]
    assert start["num_processes"] == 2 and start["samples_per_step"] == 32
    assert end["event"] == "end" and len(end["weights_digest"]) == 2
    assert end["weights_digest"][0] == end["weights_digest"][1], "both processes end with the same weights"

    # The schedule advanced once per optimizer step, not once per process or per micro-batch.
    config = load_recipe(
        "quickstart", steps=3, optimizer="sgd", lr=0.2, scheduler="cosine", warmup_fraction=0.34, min_lr=0.02
    )
    assert [r["lr"] for r in log if "lr" in r] == pytest.approx(reference_lrs(config), rel=1e-12)

    # 2 processes x 4 micro-batches x 4 patches == one process, one batch of 32 (same 32 patches per step).
    single = train_in_process([*ARGS, *data, "--output-dir", str(tmp_path / "single"), "--batch-size", "32"])
    # (SGD and MSE: see test_train_run.py's accumulation test; 2e-5 of the update is float32 summation order.)
    a, b = weights(run_dir), weights(single)
    update = max((a[k] - v).abs().max().item() for k, v in initial_weights().items())
    assert update > 1e-2 and max((a[k] - b[k]).abs().max().item() for k in a) < 2e-5 * update
    losses = [[r["loss"] for r in read_log(d) if "loss" in r] for d in (run_dir, single)]
    assert losses[0][0] == pytest.approx(losses[1][0], rel=1e-6)

    # The same images from a decoded store, memory-mapped by both processes: the same patches, the same weights.
    write_store(
        load_source(str(photos), split="train", cache_dir=str(tmp_path / "hf-cache")), tmp_path / "store", scale=4
    )
    launch(REPO / "train" / "run.py", *ddp, "--dataset", str(tmp_path / "store"), "--output-dir", str(tmp_path / "s"))
    c = weights(tmp_path / "s")
    assert all(torch.equal(a[k], c[k]) for k in a)


# train/run.py with a loss that is NaN in process 1 only, at its micro-batches listed in argv[1] (1-based).
NAN_IN_ONE_PROCESS = """
import os, sys
import torch
import train.run as run
calls, at = [], {int(s) for s in sys.argv[1].split(",")}
def loss(sr, hr):
    calls.append(1)
    value = torch.nn.functional.mse_loss(sr, hr)
    return value * float("nan") if os.environ["RANK"] == "1" and len(calls) in at else value
run.LOSSES["mse"] = loss
run.main(sys.argv[2:])
"""


def test_a_nan_in_one_process_skips_the_step_in_both(tmp_path, photos):
    script = tmp_path / "nan_in_one.py"
    script.write_text(NAN_IN_ONE_PROCESS)
    run_dir = tmp_path / "nan"
    # 3 steps of 2 micro-batches; process 1's 5th micro-batch (step 3's first) is NaN: its gradients poison the
    # accumulated sum of that process, so step 3 must be skipped, in process 0 too, whose losses were all finite.
    result = launch(
        script,
        "5",
        *ARGS,
        "--dataset",
        str(photos),
        "--cache-dir",
        str(tmp_path / "hf-cache"),
        "--output-dir",
        str(run_dir),
        "--batch-size",
        "2",
        "--gradient-accumulation-steps",
        "2",
        "--save-every",
        "2",
        "--keep-checkpoints",
        "5",
    )
    assert "warning: step 3: NaN or infinite loss, update skipped" in result.stdout + result.stderr
    log = read_log(run_dir)
    assert [r["nonfinite_steps"] for r in log if "nonfinite_steps" in r] == [0, 0, 1]
    assert all(np.isfinite(r["loss"]) for r in log if "loss" in r)
    end = log[-1]
    assert end["event"] == "end" and end["weights_digest"][0] == end["weights_digest"][1]
    # Step 3 changed nothing: the final weights are those of the step-2 checkpoint, and they moved in steps 1-2.
    after_2 = load_file(run_dir / "checkpoints" / "step-00000002" / "model.safetensors")
    final = weights(run_dir)
    assert all(torch.equal(final[k], after_2[k]) for k in final)
    assert any(not torch.equal(final[k], v) for k, v in initial_weights().items())


def initial_weights():
    from sr_models import create_model

    torch.manual_seed(0)
    return create_model("pan", scale=4, channels=8, upsample_channels=8, num_blocks=1).state_dict()
