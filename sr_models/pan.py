"""PAN: Zhao et al., "Efficient Image Super-Resolution Using Pixel Attention", ECCV 2020 Workshops (AIM).

Same computation and parameter count as the authors' code. One deliberate difference in layout: the two 1x1
convs that open an SC-PA block (`conv1_a`, `conv1_b` in the authors' files) are one conv whose output is split
in two, so the block reads as split -> two branches -> merge. `sr_models.weights` maps the authors' keys.
"""

import torch.nn.functional as F
from einops import rearrange
from torch import nn

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

    supported_scales = tuple(UPSAMPLE_STAGES)
    # Valid hyper-parameters (sr_models.registry.check_spec): inclusive ranges, wide enough for any real use and
    # narrow enough that a damaged or hostile file cannot make us build a model for minutes or exhaust memory.
    hyperparameter_ranges = {"channels": (2, 1024), "upsample_channels": (1, 1024), "num_blocks": (0, 512),
                             "in_channels": (3, 3)}  # fmt: skip
    even_hyperparameters = ("channels",)  # SC-PA splits its channels into two halves

    def __init__(self, *, scale=4, channels=40, upsample_channels=24, num_blocks=16, in_channels=3):
        super().__init__()
        assert scale in UPSAMPLE_STAGES, f"PAN supports scales {self.supported_scales}, got {scale}"
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
