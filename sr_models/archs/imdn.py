"""IMDN: Hui et al., "Lightweight Image Super-Resolution with Information Multi-distillation Network", ACM MM 2019
(winner of the AIM 2019 constrained SR challenge).

Written from the paper; the same computation and parameter count as the authors' code (715,176 at x4), with our
own names: `import_authors_keys` maps the authors' files (`fea_conv`, `IMDB1..6`, `c`, `LR_conv`, `upsampler`).
"""

import torch
from torch import nn

from sr_models.archs.base import Architecture, layer_count, renamed
from sr_models.layers import PixelShuffle

DISTILLATION_RATE = 4  # an IMD step keeps 1/4 of its channels (distilled) and refines the other 3/4
ATTENTION_REDUCTION = 16  # contrast-aware channel attention squeezes its channels 16-fold
NEGATIVE_SLOPE = 0.05  # the authors' LeakyReLU


def conv(in_channels, out_channels, kernel_size):
    return nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)


class ContrastChannelAttention(nn.Module):
    """CCA: a per-channel gate from each channel's contrast (standard deviation) plus its mean over the image,
    through a squeeze-excite pair of 1x1 convs."""

    def __init__(self, *, channels):
        super().__init__()
        assert channels >= ATTENTION_REDUCTION, f"CCA squeezes {ATTENTION_REDUCTION}-fold, got {channels} channels"
        self.squeeze = conv(channels, channels // ATTENTION_REDUCTION, 1)
        self.excite = conv(channels // ATTENTION_REDUCTION, channels, 1)

    def forward(self, x):
        mean = x.mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        variance = ((x - mean) ** 2).mean(dim=(2, 3), keepdim=True)
        # clamp: the square root's gradient is infinite at 0 (a flat patch); the value changes by at most 1e-6
        contrast = variance.clamp_min(1e-12).sqrt()
        gate = self.excite(torch.relu(self.squeeze(contrast + mean))).sigmoid()
        return x * gate


class IMDB(nn.Module):
    """Information multi-distillation block: three steps each keep a quarter of their channels (distilled) and
    refine the rest with a 3x3 conv; a last conv makes the fourth quarter; the four are concatenated, gated by CCA,
    fused by a 1x1 conv and added to the input."""

    def __init__(self, *, channels):
        super().__init__()
        self.distilled = channels // DISTILLATION_RATE
        self.remaining = channels - self.distilled
        self.steps = nn.ModuleList(
            [conv(channels, channels, 3), conv(self.remaining, channels, 3), conv(self.remaining, channels, 3)]
        )
        self.last = conv(self.remaining, self.distilled, 3)
        self.attention = ContrastChannelAttention(channels=self.distilled * DISTILLATION_RATE)
        self.fuse = conv(self.distilled * DISTILLATION_RATE, channels, 1)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)

    def forward(self, x):
        kept, features = [], x
        for step in self.steps:
            distilled, features = torch.split(self.act(step(features)), [self.distilled, self.remaining], dim=1)
            kept.append(distilled)
        kept.append(self.last(features))
        return x + self.fuse(self.attention(torch.cat(kept, dim=1)))


class IMDN(nn.Module):
    """Information Multi-distillation Network.

    Args:
        scale: upscaling factor, one of 2, 3, 4 (one conv + pixel shuffle(scale) at the end).
        channels: feature width (`nf`, 64 in the paper); a multiple of 4, at least 16.
        num_blocks: IMDB blocks (6 in the paper); their outputs are all concatenated and fused.
        in_channels: image channels in and out (3 for RGB).
    """

    def __init__(self, *, scale=4, channels=64, num_blocks=6, in_channels=3):
        super().__init__()
        assert scale in SCALES, f"IMDN supports scales {SCALES}, got {scale}"
        assert num_blocks >= 1, "IMDN fuses the outputs of its blocks: at least one"
        self.scale = scale
        self.head = conv(in_channels, channels, 3)
        self.blocks = nn.ModuleList([IMDB(channels=channels) for _ in range(num_blocks)])
        self.fuse = conv(channels * num_blocks, channels, 1)
        self.act = nn.LeakyReLU(NEGATIVE_SLOPE)
        self.trunk_conv = conv(channels, channels, 3)
        self.tail = nn.Sequential(conv(channels, in_channels * scale * scale, 3), PixelShuffle(scale))

    def forward(self, x):  # (B, 3, H, W) in [0, 1]
        features = self.head(x)
        outputs, block_out = [], features
        for block in self.blocks:
            block_out = block(block_out)
            outputs.append(block_out)
        fused = self.act(self.fuse(torch.cat(outputs, dim=1)))
        return self.tail(self.trunk_conv(fused) + features)  # (B, 3, H*scale, W*scale)


SCALES = (2, 3, 4)

# ---- what the toolkit knows about IMDN --------------------------------------------------------------------------

# The authors' names (left) -> ours (right).
_AUTHORS_RENAMES = [
    (r"^fea_conv\.", "head."),
    (r"^IMDB(\d+)\.c([123])\.", lambda m: f"blocks.{int(m[1]) - 1}.steps.{int(m[2]) - 1}."),
    (r"^IMDB(\d+)\.c4\.", lambda m: f"blocks.{int(m[1]) - 1}.last."),
    (r"^IMDB(\d+)\.c5\.", lambda m: f"blocks.{int(m[1]) - 1}.fuse."),
    (r"^IMDB(\d+)\.cca\.conv_du\.0\.", lambda m: f"blocks.{int(m[1]) - 1}.attention.squeeze."),
    (r"^IMDB(\d+)\.cca\.conv_du\.2\.", lambda m: f"blocks.{int(m[1]) - 1}.attention.excite."),
    (r"^c\.0\.", "fuse."),
    (r"^LR_conv\.", "trunk_conv."),
    (r"^upsampler\.0\.", "tail.0."),
]


def import_authors_keys(state):
    """The authors' IMDN state_dict (`IMDB1.c1` ..., `module.` already removed) in our layout; any other state
    unchanged. Unknown keys pass through, so the strict check names them."""
    if "IMDB1.c1.weight" not in state:
        return state
    return {renamed(key, _AUTHORS_RENAMES): tensor for key, tensor in state.items()}


def int8_float_modules(model):
    """The head (its output starts every block's input and is the long skip, so its rounding reaches the tail
    unfiltered) and the tail conv (its output, shuffled, is the image: no skip after it smooths its rounding).
    Measured with the authors' weights (`export/to_onnx.py --precision int8`, largest drop of the parity images,
    Zen 4 EPYC): x2 0.428 -> 0.199 dB, x3 0.235 -> 0.157, x4 0.280 -> 0.227; a percentile of 99.99999 was worse at x2
    (0.250 with these float, 0.430 without)."""
    return ["head", "tail.0"]


def detect(state):
    return "head.weight" in state and "blocks.0.steps.0.weight" in state and "tail.0.weight" in state


def recognize(state):
    """The tail conv has in_channels x scale^2 outputs: the scale is read from it."""
    in_channels = state["head.weight"].shape[1]
    scale = round((state["tail.0.weight"].shape[0] / in_channels) ** 0.5)
    hyperparameters = {
        "channels": state["head.weight"].shape[0],
        "num_blocks": layer_count(state, "blocks."),
        "in_channels": in_channels,
    }
    return hyperparameters, [scale] if scale in SCALES else []


ARCHITECTURE = Architecture(
    name="imdn",
    model_class=IMDN,
    description="IMDN (Hui et al., ACM MM 2019): information multi-distillation blocks, 715K parameters at x4",
    scales=SCALES,
    hyperparameters={"channels": (16, 1024), "num_blocks": (1, 64), "in_channels": (3, 3)},
    multiple_of={"channels": DISTILLATION_RATE},
    tiny={"channels": 16, "num_blocks": 1},
    detect=detect,
    recognize=recognize,
    import_state=import_authors_keys,
    int8_float_modules=int8_float_modules,
)
