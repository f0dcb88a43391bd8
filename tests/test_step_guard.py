"""The NaN/inf guard reads the device once per optimizer step (train/step_guard.py), not once per micro-batch.

On a GPU, every read of a tensor's value on the host (`.item()`, `.tolist()`, `bool(t)`, `float(t)`) waits for
the GPU; bench/gpu_check.py counts them there with torch.cuda.set_sync_debug_mode. Here, on CPU, the same reads
are counted by wrapping those Tensor methods while train/run.py trains (the guard's tests of behaviour, NaN in one
process included, are in test_faults.py and test_train_distributed.py).
"""

import itertools
from types import SimpleNamespace

import pytest
import torch
from conftest import train_in_process

from train.step_guard import StepGuard

READS = ("item", "tolist", "__bool__", "__float__", "__int__", "__index__", "numpy")


def test_the_guard_counts_on_the_device_and_decides_once():
    guard, one_process = StepGuard("cpu"), SimpleNamespace(num_processes=1)
    for loss in (1.0, float("nan"), 2.0, float("inf")):
        guard.add(torch.tensor(loss))
    assert guard.flags.tolist() == [2, 0]
    assert guard.decide(one_process) == (False, False)
    guard.add(torch.tensor(0.5))
    assert guard.decide(one_process, stop_requested=True) == (True, True), "counts start again at each step"
    assert guard.decide(one_process) == (True, False)


@pytest.mark.usefixtures("fresh_accelerate_state")
def test_one_host_read_per_optimizer_step_in_the_steady_state(tmp_path, monkeypatch):
    reads, at_decide = [], []
    for name in READS:
        original = getattr(torch.Tensor, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            reads.append(_name)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)
    decide = StepGuard.decide

    def recorded(self, *args, **kwargs):
        at_decide.append(len(reads))
        return decide(self, *args, **kwargs)

    monkeypatch.setattr(StepGuard, "decide", recorded)
    # 40 optimizer steps of 3 micro-batches, gradient clipping on; SGD with momentum (Adam reads its CPU step
    # counter with .item(), which is not a device sync on a GPU: its counter lives on the host). A run logs at
    # least 20 times (train/feedback.py: log_interval), here every 2nd step: the steps between logs are counted.
    train_in_process(
        [
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
            "--val-dataset",
            "none",
            "--steps",
            "40",
            "--log-every",
            "40",
            "--batch-size",
            "2",
            "--gradient-accumulation-steps",
            "3",
            "--optimizer",
            "sgd",
            "--grad-clip",
            "0.5",
            "--output-dir",
            str(tmp_path / "run"),
        ]
    )
    assert len(at_decide) == 40
    # per_step[i]: the reads from step i+1's decision to step i+2's, which include step i+1's log line if it logs
    per_step = [b - a for a, b in itertools.pairwise(at_decide)]
    unlogged = [count for i, count in enumerate(per_step) if (i + 1) % 2]
    assert len(unlogged) == 20 and unlogged == [1] * 20, f"host reads between optimizer steps: {per_step}"
