"""PAN: Zhao et al., "Efficient Image Super-Resolution Using Pixel Attention", ECCV 2020 Workshops (AIM).

Same computation and parameter count as the authors' code. One deliberate difference in layout: the two 1x1
convs that open an SC-PA block (`conv1_a`, `conv1_b` in the authors' files) are one conv whose output is split
in two, so the block reads as split -> two branches -> merge. `import_authors_keys` maps the authors' keys.
"""

import re
import types

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from sr_models.archs.base import Architecture, layer_count, renamed
from sr_models.layers import PixelAttention

# Nearest-neighbour factors of the U-PA stages per scale.
UPSAMPLE_STAGES = {2: (2,), 3: (3,), 4: (2, 2)}


class PAConv(nn.Module):
    """Pixel-attention conv: conv3x3(x) * sigmoid(conv1x1(x)), then conv3x3."""

    def __init__(self, *, channels):
        super().__init__()
        self.gate = nn.Conv2d(channels, channels, 1)
        self.conv = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.out = nn.Conv2d(channels, channels, 3, padding=1, bias=False)

    def forward(self, x):
        return self.out(self.conv(x) * self.gate(x).sigmoid())


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention: split in two branches (plain conv3x3 | PAConv), merge, add."""

    def __init__(self, *, channels):
        super().__init__()
        assert channels % 2 == 0, f"SC-PA splits its channels in two halves, got {channels}"
        branch_channels = channels // 2
        self.split = nn.Conv2d(channels, channels, 1, bias=False)  # both branches' 1x1 convs at once
        self.plain_branch = nn.Conv2d(branch_channels, branch_channels, 3, padding=1, bias=False)
        self.attention_branch = PAConv(channels=branch_channels)
        self.merge = nn.Conv2d(channels, channels, 1, bias=False)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        plain, attention = rearrange(self.act(self.split(x)), "b (branch c) h w -> branch b c h w", branch=2)
        plain = self.act(self.plain_branch(plain))
        attention = self.act(self.attention_branch(attention))
        merged = rearrange([plain, attention], "branch b c h w -> b (branch c) h w")
        return x + self.merge(merged)


class UPA(nn.Module):
    """U-PA upsampling stage: nearest upsample -> conv3x3 -> pixel attention -> LReLU -> conv3x3 -> LReLU."""

    def __init__(self, *, factor, in_channels, channels):
        super().__init__()
        self.factor = factor
        self.conv = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.attention = PixelAttention(channels=channels)
        self.refine = nn.Conv2d(channels, channels, 3, padding=1)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x):
        x = self.conv(F.interpolate(x, scale_factor=self.factor, mode="nearest"))
        x = self.act(self.attention(x))
        return self.act(self.refine(x))


class PAN(nn.Module):
    """Pixel Attention Network.

    Args:
        scale: upscaling factor, one of 2, 3, 4 (x4 is two nearest-x2 U-PA stages, x2/x3 one stage).
        channels: feature width of the trunk (`nf`, 40 in the paper).
        upsample_channels: width of the U-PA stages (`unf`, 24 in the paper).
        num_blocks: SC-PA blocks in the trunk (`nb`, 16 in the paper).
        in_channels: image channels in and out (3 for RGB).
    """

    def __init__(self, *, scale=4, channels=40, upsample_channels=24, num_blocks=16, in_channels=3):
        super().__init__()
        assert scale in UPSAMPLE_STAGES, f"PAN supports scales {tuple(UPSAMPLE_STAGES)}, got {scale}"
        self.scale = scale
        self.head = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.trunk = nn.Sequential(*[SCPA(channels=channels) for _ in range(num_blocks)])
        self.trunk_conv = nn.Conv2d(channels, channels, 3, padding=1)
        stage_inputs = [channels] + [upsample_channels] * (len(UPSAMPLE_STAGES[scale]) - 1)
        self.upsample = nn.Sequential(
            *[
                UPA(factor=factor, in_channels=stage_in, channels=upsample_channels)
                for factor, stage_in in zip(UPSAMPLE_STAGES[scale], stage_inputs)
            ]
        )
        self.tail = nn.Conv2d(upsample_channels, in_channels, 3, padding=1)

    def forward(self, x):  # (B, 3, H, W) in [0, 1]
        features = self.head(x)
        features = features + self.trunk_conv(self.trunk(features))
        residual = self.tail(self.upsample(features))  # (B, 3, H*scale, W*scale)
        return residual + F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)


# ---- what the toolkit knows about PAN ---------------------------------------------------------------------------

# The PAN authors' names (left) -> ours (right), for every tensor but the SC-PA split, which is two of theirs.
_AUTHORS_RENAMES = [
    (r"^conv_first\.", "head."),
    (r"^SCPA_trunk\.(\d+)\.k1\.0\.", r"trunk.\1.plain_branch."),
    (r"^SCPA_trunk\.(\d+)\.PAConv\.k2\.", r"trunk.\1.attention_branch.gate."),
    (r"^SCPA_trunk\.(\d+)\.PAConv\.k3\.", r"trunk.\1.attention_branch.conv."),
    (r"^SCPA_trunk\.(\d+)\.PAConv\.k4\.", r"trunk.\1.attention_branch.out."),
    (r"^SCPA_trunk\.(\d+)\.conv3\.", r"trunk.\1.merge."),
    (r"^upconv(\d)\.", lambda m: f"upsample.{int(m[1]) - 1}.conv."),
    (r"^att(\d)\.conv\.", lambda m: f"upsample.{int(m[1]) - 1}.attention.conv."),
    (r"^HRconv(\d)\.", lambda m: f"upsample.{int(m[1]) - 1}.refine."),
    (r"^conv_last\.", "tail."),
]


def import_authors_keys(state):
    """The authors' PAN state_dict (`SCPA_trunk.N.conv1_a` ...) in our layout; any other state unchanged. Unknown
    keys pass through, so the strict check names them."""
    if "SCPA_trunk.0.conv1_a.weight" not in state:
        return state
    converted = {}
    for key, tensor in state.items():
        split = re.match(r"^SCPA_trunk\.(\d+)\.conv1_([ab])\.weight$", key)
        if split:
            if split[2] == "a":  # our split conv = their conv1_a (first half of outputs) stacked on conv1_b
                other = state.get(key.replace("conv1_a", "conv1_b"))
                if other is not None:
                    converted[f"trunk.{split[1]}.split.weight"] = torch.cat([tensor, other], dim=0)
                else:
                    converted[key] = tensor
            elif key.replace("conv1_b", "conv1_a") not in state:
                converted[key] = tensor
            continue
        converted[renamed(key, _AUTHORS_RENAMES)] = tensor
    return converted


def detect(state):
    return "head.weight" in state and "trunk.0.split.weight" in state and "tail.weight" in state


def recognize(state):
    """One U-PA stage is x2 or x3 (their tensors are identical, so both are returned), two stages are x4."""
    blocks = len({key.split(".")[1] for key in state if key.startswith("trunk.") and key.count(".") > 2})
    hyperparameters = {
        "channels": state["head.weight"].shape[0],
        "upsample_channels": state["tail.weight"].shape[1],
        "num_blocks": blocks,
        "in_channels": state["head.weight"].shape[1],
    }
    stages = layer_count(state, "upsample.")
    return hyperparameters, [scale for scale, factors in UPSAMPLE_STAGES.items() if len(factors) == stages]


def _scpa_forward_split_concat(self, x):
    """`SCPA.forward` with its einops branch split and merge written as what they mean: a channel Split and Concat.

    "b (branch c) h w -> branch b c h w" takes the first half of the channels as branch 0: a split at a fixed
    channel count (a constant, so ONNX gets one Split node, not a shape computation); the merge is `cat(dim=1)`.
    As einops, the TorchScript exporter emits Shape/Gather/Reshape/Transpose chains per block, and onnxruntime's
    int8 kernels pay ~14 ms per block for the 5-D Transpose (docs/performance.md).
    """
    half = self.plain_branch.in_channels
    plain, attention = torch.split(self.act(self.split(x)), [half, half], dim=1)
    plain = self.act(self.plain_branch(plain))
    attention = self.act(self.attention_branch(attention))
    return x + self.merge(torch.cat([plain, attention], dim=1))


def graph_friendly(model):
    for block in model.modules():
        if isinstance(block, SCPA):
            block.forward = types.MethodType(_scpa_forward_split_concat, block)


def int8_float_modules(model):
    """Convs kept float in int8, chosen by measurement (export/sensitivity.py, bench/int8_quality.py, docs/int8.md):
    the refine conv of the last U-PA stage (full output resolution; 1.78 dB of the worst crop's drop, 10x any
    other), the tail, the first SC-PA block's split and attention convs, and the head. The head's output starts the
    residual stream, the widest-ranging tensor of the net, and is also the long skip, so its int8 rounding reached
    the upsampler unfiltered: keeping it float took the worst held-out drop on drawn images from 0.32 to 0.23 dB
    for 0.2% of the multiply-adds. Keeping every block's split conv float as well measured no better, and was
    slower."""
    first_block = ["trunk.0.attention_branch.conv", "trunk.0.split"] if len(model.trunk) else []
    return [f"upsample.{len(model.upsample) - 1}.refine", "tail", *first_block, "head"]


ARCHITECTURE = Architecture(
    name="pan",
    model_class=PAN,
    description="PAN (Zhao et al., AIM 2020): SC-PA blocks and U-PA upsampling, 272K parameters at x4",
    scales=tuple(UPSAMPLE_STAGES),
    hyperparameters={
        "channels": (2, 1024),
        "upsample_channels": (1, 1024),
        "num_blocks": (0, 512),
        "in_channels": (3, 3),
    },
    multiple_of={"channels": 2},  # SC-PA splits its channels into two halves
    tiny={"channels": 8, "upsample_channels": 8, "num_blocks": 1},
    detect=detect,
    recognize=recognize,
    import_state=import_authors_keys,
    graph_friendly=graph_friendly,
    int8_float_modules=int8_float_modules,
    # Percentile calibration cuts the rare outliers that stretch min/max ranges; where to cut trades clipping (the
    # hard edges of drawn images, PAN's hardest) against coarse steps (smooth photos): all but the top 1e-7 of
    # values, since 99.9999 clipped cartoon edges (docs/int8.md has the figures).
    calibration_percentile=99.99999,
)
