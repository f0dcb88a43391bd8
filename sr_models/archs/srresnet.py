"""SRResNet (Ledig et al., CVPR 2017), as the lab report specifies it."""

from torch import nn

from sr_models.archs.base import Architecture, layer_count
from sr_models.layers import PixelShuffle, ResidualBlock, conv_before_pixel_shuffle

# Upsampling stages per scale: each stage is conv -> pixel shuffle(r) -> PReLU.
UPSAMPLE_STAGES = {2: (2,), 3: (3,), 4: (2, 2), 8: (2, 2, 2)}


class SRResNet(nn.Module):
    """SRResNet generator.

    Args:
        scale: upscaling factor, one of 2, 3, 4, 8 (x3 uses one r=3 pixel-shuffle stage, the others r=2 stages).
        channels: feature width of the trunk (64 in the paper).
        num_blocks: residual blocks in the trunk (16 in the paper).
        in_channels: image channels in and out (3 for RGB).
    """

    def __init__(self, *, scale=4, channels=64, num_blocks=16, in_channels=3):
        super().__init__()
        assert scale in UPSAMPLE_STAGES, f"SRResNet supports scales {tuple(UPSAMPLE_STAGES)}, got {scale}"
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(in_channels, channels, 9, padding=4), nn.PReLU())
        self.trunk = nn.Sequential(
            *[ResidualBlock(channels=channels) for _ in range(num_blocks)],
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.BatchNorm2d(channels),
        )
        self.upsample = nn.Sequential(
            *[
                nn.Sequential(nn.Conv2d(channels, channels * r * r, 3, padding=1), PixelShuffle(r), nn.PReLU())
                for r in UPSAMPLE_STAGES[scale]
            ]
        )
        self.tail = nn.Conv2d(channels, in_channels, 9, padding=4)

    def forward(self, x):  # (B, 3, H, W) in [0, 1]
        features = self.head(x)
        features = features + self.trunk(features)  # long skip from the head
        return self.tail(self.upsample(features))  # (B, 3, H*scale, W*scale)


# ---- what the toolkit knows about SRResNet ----------------------------------------------------------------------


def detect(state):
    return "head.0.weight" in state and "upsample.0.0.weight" in state and "tail.weight" in state


def recognize(state):
    """Each stage's conv has channels x r^2 outputs, so the stages (2), (3), (2, 2), (2, 2, 2) are x2, x3, x4, x8."""
    channels = state["head.0.weight"].shape[0]
    factors = [
        round((state[f"upsample.{index}.0.weight"].shape[0] / channels) ** 0.5)
        for index in range(layer_count(state, "upsample."))
    ]
    blocks = len({key.split(".")[1] for key in state if key.startswith("trunk.") and key.count(".") > 2})
    hyperparameters = {"channels": channels, "num_blocks": blocks, "in_channels": state["head.0.weight"].shape[1]}
    return hyperparameters, [scale for scale, stages in UPSAMPLE_STAGES.items() if list(stages) == factors]


def graph_friendly(model):
    """SRResNet ends with PixelShuffle(r) -> PReLU -> 9x9 conv to 3 channels on the full-size image. A 3-channel
    conv is a poor matrix product (onnxruntime: 2.7 s of a 256x256 x4 call at one thread). Moved before the shuffle
    it is a 5x5 conv to 12 channels on the half-size image: the same sums, 0.8 s."""
    conv, shuffle, prelu = model.upsample[-1]
    assert isinstance(shuffle, nn.PixelShuffle), "run after the einops pixel shuffles became nn.PixelShuffle"
    r = shuffle.upscale_factor
    assert prelu.num_parameters == 1, "one PReLU slope commutes with the shuffle; per-channel slopes would not"
    model.upsample[-1] = nn.Sequential(conv, prelu, conv_before_pixel_shuffle(model.tail, r), nn.PixelShuffle(r))
    model.tail = nn.Identity()


def int8_float_modules(model):
    """The conv after the residual trunk and the first upsampling conv, the two most sensitive (measured at the
    paper's width on a briefly trained model, docs/int8.md): without the upsampling conv the smoothest photo lost
    0.64 dB, without the trunk conv 0.43 dB; the next one (the last block's first conv) bought 0.003 dB for 0.1x of
    int8's speed-up. The 9x9 head and tail stay float anyway (export.quantize: kernels larger than 3x3)."""
    return [f"trunk.{len(model.trunk) - 2}", "upsample.0.0"]


ARCHITECTURE = Architecture(
    name="srresnet",
    model_class=SRResNet,
    description="SRResNet (Ledig et al., CVPR 2017): 16 residual blocks, pixel-shuffle upsampling, 1.5M parameters",
    scales=tuple(UPSAMPLE_STAGES),
    hyperparameters={"channels": (1, 1024), "num_blocks": (0, 512), "in_channels": (3, 3)},
    tiny={"channels": 8, "num_blocks": 1},
    detect=detect,
    recognize=recognize,
    graph_friendly=graph_friendly,
    int8_float_modules=int8_float_modules,
)
