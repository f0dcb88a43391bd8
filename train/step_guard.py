"""The NaN/inf guard of an optimizer step, with one host-device sync per optimizer step, not per micro-batch.

Reading a loss on the host (`.item()`, `bool(tensor)`) makes Python wait until the GPU has computed it, so the
next kernels are not queued while the current ones run. The guard therefore only counts non-finite losses on the
device while the micro-batches of a step run (`add`), and reads the count once, at the optimizer step (`decide`),
after one all-reduce, so that every process takes the same decision: a NaN on one process skips the step on all
of them, and no process waits alone in DDP's gradient all-reduce (every process always runs its backward).

A non-finite micro-batch's gradients are not kept out of the accumulated sum one by one: they poison it, so the
whole optimizer step is skipped, on every process alike (the caller zeroes the gradients). Clipping must come
after `decide` (a skipped step is not clipped: fp16's grad scaler would otherwise be left half-way, unscaled).

The same all-reduce carries the "stop requested" flag of every process (SIGTERM/SIGINT), so that a multi-process
run does not pay a second sync per step to agree on stopping.
"""

import torch


class StepGuard:
    def __init__(self, device):
        # [micro-batches with a NaN/inf loss, processes asked to stop], kept on the device
        self.flags = torch.zeros(2, dtype=torch.int32, device=device)

    def add(self, loss):
        """Count the micro-batch's loss if it is NaN or infinite: a device operation, no sync."""
        self.flags[0] += (~torch.isfinite(loss.detach())).to(torch.int32)

    def decide(self, accelerator, *, stop_requested=False):
        """(every process's micro-batches of this step were finite, some process was asked to stop).

        One all-reduce (with several processes) and one read: the step's only host-device sync.
        """
        if stop_requested:
            self.flags[1].fill_(1)  # a kernel, not a copy from the host (a pageable copy would sync too)
        flags = accelerator.reduce(self.flags, reduction="sum") if accelerator.num_processes > 1 else self.flags
        nonfinite, stop = flags.tolist()
        self.flags.zero_()
        return nonfinite == 0, stop > 0
