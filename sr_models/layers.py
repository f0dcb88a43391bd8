"""Layers shared by the architectures: pixel shuffle, pixel attention, the SRResNet residual block; and the one
rewrite of a conv that export needs (`conv_before_pixel_shuffle`)."""

import torch
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


def conv_before_pixel_shuffle(conv, r):
    """The conv that, run BEFORE `nn.PixelShuffle(r)`, gives what `conv` gives run after it.

    `conv(PixelShuffle(r)(x))`: a k x k conv over the r-times larger image. Output pixel (r*i + a, r*j + b) reads
    shuffled pixels (r*i + a + dy, r*j + b + dx), i.e. channel (c, e, f) of input pixel (i + p, j + q) with
    a + dy = r*p + e. So the same sums are a conv over the small image, with r*r times the output channels (one
    per (a, b)), r*r times the input channels and a kernel of 2*ceil(k//2 / r) + 1: `PixelShuffle(r)(conv'(x))`.
    Zero padding agrees too: a shuffled pixel is outside the image exactly when its small-image pixel is.
    """
    assert conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1, "plain stride-1 convs only"
    k = conv.kernel_size[0]
    assert conv.kernel_size == (k, k) and k % 2 == 1 and conv.padding == (k // 2, k // 2), "odd 'same' kernels only"
    half = k // 2
    reach = -(-half // r)  # ceil(half / r): how far, in small-image pixels, the kernel reaches
    out_channels, in_channels = conv.out_channels, conv.in_channels
    weight = conv.weight.detach()
    folded = torch.zeros(out_channels, r, r, in_channels, r, r, 2 * reach + 1, 2 * reach + 1, dtype=weight.dtype)
    for a in range(r):
        for b in range(r):
            for dy in range(-half, half + 1):
                p, e = divmod(a + dy, r)
                for dx in range(-half, half + 1):
                    q, f = divmod(b + dx, r)
                    folded[:, a, b, :, e, f, p + reach, q + reach] = weight[:, :, dy + half, dx + half]
    before = nn.Conv2d(
        in_channels * r * r, out_channels * r * r, 2 * reach + 1, padding=reach, bias=conv.bias is not None
    )
    before.weight.data = folded.reshape(before.weight.shape)  # (o a b) (c e f) kh kw: PixelShuffle's channel order
    if conv.bias is not None:
        before.bias.data = conv.bias.detach().repeat_interleave(r * r)
    return before
