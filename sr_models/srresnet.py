"""SRResNet (Ledig et al., CVPR 2017), as the lab report specifies it."""

from torch import nn

from sr_models.layers import PixelShuffle, ResidualBlock

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

    supported_scales = tuple(UPSAMPLE_STAGES)
    hyperparameter_ranges = {"channels": (1, 1024), "num_blocks": (0, 512), "in_channels": (3, 3)}  # see PAN
    even_hyperparameters = ()

    def __init__(self, *, scale=4, channels=64, num_blocks=16, in_channels=3):
        super().__init__()
        assert scale in UPSAMPLE_STAGES, f"SRResNet supports scales {self.supported_scales}, got {scale}"
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
