"""Layers shared by the architectures: pixel shuffle, pixel attention, the SRResNet residual block."""

from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn


def pixel_shuffle(x, scale):
    """Sub-pixel rearrangement, the einops twin of `nn.PixelShuffle(scale)`."""
    return rearrange(x, "b (c r1 r2) h w -> b c (h r1) (w r2)", r1=scale, r2=scale)  # (B, C, H*r, W*r)


def PixelShuffle(scale):
    """`pixel_shuffle` as a layer for `nn.Sequential`."""
    return Rearrange("b (c r1 r2) h w -> b c (h r1) (w r2)", r1=scale, r2=scale)


class PixelAttention(nn.Module):
    """x * sigmoid(conv1x1(x)): a per-pixel, per-channel gate (PAN's PA)."""

    def __init__(self, *, channels):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 1)

    def forward(self, x):
        return x * self.conv(x).sigmoid()


class ResidualBlock(nn.Module):
    """SRResNet block: conv3x3 -> BN -> PReLU -> conv3x3 -> BN, plus the identity."""

    def __init__(self, *, channels):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
            nn.PReLU(),
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x):
        return x + self.body(x)
