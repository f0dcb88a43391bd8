"""Training memory is estimated before it is allocated, and a run that cannot fit is refused in one line.

`--lr-patch-size 4096 --small-images pad` once took a whole machine's memory until the kernel killed the run:
each patch was padded to 4096 x 4096 LR (16384 x 16384 HR at x4), and a batch of them with the model's
activations needs hundreds of GiB. `check_training_memory` refuses such a run before the run folder is made:

    error: training needs about 2,315 GiB per process for one micro-batch (batch 16, LR patch 4096x4096, HR
    16384x16384: patches 225 GiB, the model's activations 2,087 GiB, ...), this machine has 21.8 GiB available
    (MemAvailable, 1 process(es)); use a smaller --lr-patch-size or --batch-size

What is counted, per process, for one micro-batch of B patches of p x p LR (HR s*p x s*p), fp32 (an upper bound
under mixed precision):
- patches: the uint8 batch in the loader and its prefetched copies (2 per DataLoader worker), the float LR and HR
  on the device, the model's output and the loss's gradient of it;
- activations: what autograd keeps for the backward pass, measured by running the model itself on two small
  inputs with `saved_tensors_hooks` (so it follows any architecture and width) and scaled by the patch area, plus
  twice the largest single activation for the transient gradients of the backward pass;
- parameters: weights, gradients and two optimizer moments (Adam's), 4 copies;
- on a CPU, what the C allocator keeps of what was freed: glibc raises its mmap threshold each time a large block
  is freed, so the tensors of later steps come from a heap that is not given back, and the resident size reaches
  1.4-1.7x the live peak (docs/reliability.md); counted as the patches and activations once more. (With the
  threshold fixed, the resident size equals the live peak but training is much slower: not the remedy.)
Not counted: the process itself (Python, PyTorch, the data set's index: a few hundred MiB).

It is compared with what the machine has: on a GPU the device's free memory (`torch.cuda.mem_get_info`) for
everything but the uint8 batches; on a CPU `MemAvailable` of /proc/meminfo shared by the training processes of
this machine (LOCAL_WORLD_SIZE). tests/test_run_rules.py checks the estimate against the peak resident size of
a real run, so that it is an upper bound of what training takes and not a guess.
"""

import os

import torch

from sr_models import create_model

GiB = 2**30
PROBES = (12, 20)  # LR sides of the two probe forwards: small (milliseconds), large enough to scale linearly


def saved_bytes(model, side, scale):
    """(bytes autograd saves for one (1, 3, side, side) forward, the largest single saved tensor) of `model`."""
    parameters = {p.data_ptr() for p in model.parameters()}
    seen, largest = {}, 0

    def pack(tensor):
        nonlocal largest
        if tensor.data_ptr() not in parameters:
            size = tensor.numel() * tensor.element_size()
            seen[(tensor.data_ptr(), size)] = size
            largest = max(largest, size)
        return tensor

    lr = torch.rand(1, 3, side, side)
    hr = torch.rand(1, 3, side * scale, side * scale)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = (model(lr) - hr).abs().mean()
    del loss
    return sum(seen.values()), largest


def activation_bytes_per_lr_pixel(config):
    """(saved activation bytes, largest activation bytes) per LR pixel of one patch, for the config's model."""
    model = create_model(config.model, scale=config.scale, **config.model_overrides).train()
    (small, small_max), (large, large_max) = (saved_bytes(model, side, config.scale) for side in PROBES)
    pixels = PROBES[1] ** 2 - PROBES[0] ** 2
    return max(large - small, 0) / pixels, large_max / PROBES[1] ** 2


def training_memory(config, *, workers=0, on_cpu=True):
    """{"device": bytes, "host": bytes, "parts": {name: bytes}} one micro-batch of training needs per process."""
    b, p, s = config.batch_size, config.lr_patch_size, config.scale
    lr_values, hr_values = b * 3 * p * p, b * 3 * (s * p) ** 2
    per_pixel, largest_per_pixel = activation_bytes_per_lr_pixel(config)
    model = create_model(config.model, scale=config.scale, **config.model_overrides)
    parameters = sum(t.numel() for t in model.parameters()) * 4
    parts = {
        "patches": (lr_values + hr_values) * 4 + hr_values * 4 * 2,  # float LR/HR, the output, its gradient
        "the model's activations": b * p * p * (per_pixel + 2 * largest_per_pixel),
        "parameters and optimizer state": parameters * 4,
    }
    if on_cpu:
        parts["freed memory the C allocator keeps"] = parts["patches"] + parts["the model's activations"]
    host = (lr_values + hr_values) * (1 + 2 * workers)  # uint8 batches: the one in use and the prefetched ones
    return {"device": sum(parts.values()), "host": host, "parts": {"uint8 batches": host, **parts}}


def available_memory(device):
    """(bytes available to one training process, how that was found) on `device`; (None, why) if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free, "free on the GPU"
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        available = int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None, "unknown (no /proc/meminfo)"
    processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return available // processes, f"available (MemAvailable, {processes} process(es))"


def memory_error(config, *, device, workers=0):
    """The one-line refusal if one micro-batch cannot fit this machine's memory; None when it fits (or is unknown)."""
    need = training_memory(config, workers=workers, on_cpu=device.type != "cuda")
    have, how = available_memory(device)
    if have is None:
        return None
    total = need["device"] + (need["host"] if device.type != "cuda" else 0)
    if total <= have:
        return None
    p, s = config.lr_patch_size, config.scale
    parts = ", ".join(f"{name} {gib(size)}" for name, size in need["parts"].items())
    return (
        f"training needs about {gib(total)} per process for one micro-batch (batch {config.batch_size}, LR patch "
        f"{p}x{p}, HR {s * p}x{s * p}, {config.model} x{s}: {parts}), this machine has {gib(have)} {how}; use a "
        "smaller --lr-patch-size or --batch-size (docs/reliability.md)"
    )


def gib(size):
    return f"{size / GiB:,.1f} GiB" if size >= GiB / 10 else f"{size / 2**20:,.0f} MiB"
