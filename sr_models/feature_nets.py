"""The two feature networks behind the perceptual metrics, as pure PyTorch (no torchvision).

- `AlexNetFeatures` + `Lpips`: LPIPS v0.1 (Zhang et al. 2018, github.com/richzhang/PerceptualSimilarity), the
  AlexNet variant, the one the `lpips` package and torchmetrics use by default. Backbone weights: torchvision's
  `alexnet-owt-7be5be79.pth`; linear layers: LPIPS's `weights/v0.1/alex.pth`.
- `FidInceptionV3`: the Inception-v3 of the TensorFlow FID/IS code (graph of 2015-12-05) as ported by pytorch-fid
  and torch-fidelity (same layer names, weights `pt_inception-2015-12-05-6726825d.pth`). It differs from
  torchvision's Inception3 in the pooling of four blocks (marked below), which is why the weights are separate.

Layer names follow those files exactly, so their state dicts load strictly (sr_models.evaluation.perceptual loads them).
torchvision is avoided on purpose: its PyPI builds pin one torch version each, and this project accepts any.
"""

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------- LPIPS (AlexNet)

LPIPS_CHANNELS = (64, 192, 384, 256, 256)  # AlexNet's five ReLU outputs that LPIPS compares


class AlexNetFeatures(nn.Module):
    """torchvision's AlexNet `features` (same indices, so `features.N.weight` keys load); returns the 5 ReLUs."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2),
            nn.ReLU(),  # 0, 1 -> relu1
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(64, 192, 5, padding=2),
            nn.ReLU(),  # 2, 3, 4 -> relu2
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),  # 5, 6, 7 -> relu3
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),  # 8, 9 -> relu4
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),  # 10, 11 -> relu5
        )
        self.taps = (1, 4, 7, 9, 11)

    def forward(self, x):
        outputs = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                outputs.append(x)
        return outputs


class LinearHead(nn.Module):
    """LPIPS's NetLinLayer: a 1x1 conv to one channel (dropout at index 0 is a no-op in eval: no weights)."""

    def __init__(self, channels):
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(channels, 1, 1, bias=False))

    def forward(self, x):
        return self.model(x)


class Lpips(nn.Module):
    """LPIPS distance between two image batches (N, 3, H, W) in [0, 1] -> (N,).

    Per tapped layer: features unit-normalised along channels, squared difference, weighted sum over channels
    (the learned 1x1 conv), mean over space; the distance is the sum over layers. `backbone` is any module
    returning a list of feature maps with `channels` channels each (tests use a small one of known weights).
    """

    def __init__(self, backbone, channels=LPIPS_CHANNELS):
        super().__init__()
        self.net = backbone
        self.lins = nn.ModuleList([LinearHead(c) for c in channels])
        # LPIPS's ScalingLayer: inputs in [-1, 1] are shifted and scaled to the ImageNet statistics.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))

    def forward(self, a, b):
        a, b = ((2 * x - 1 - self.shift) / self.scale for x in (a, b))
        distance = 0
        for lin, fa, fb in zip(self.lins, self.net(a), self.net(b)):
            fa, fb = (f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in (fa, fb))  # unit length per pixel
            distance = distance + lin((fa - fb) ** 2).mean(dim=(2, 3))  # (N, 1)
        return distance[:, 0]


# ---------------------------------------------------------------- FID Inception-v3


class BasicConv2d(nn.Module):
    def __init__(self, cin, cout, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg_pool(x):
    # The TF graph averages over the real pixels only at the border (torchvision counts the zero padding).
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

    def forward(self, x):
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch5x5_2(self.branch5x5_1(x)),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                self.branch_pool(_avg_pool(x)),
            ],
            1,
        )


class InceptionB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

    def forward(self, x):
        return torch.cat(
            [
                self.branch3x3(x),
                self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                F.max_pool2d(x, 3, stride=2),
            ],
            1,
        )


class InceptionC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        dbl = x
        for i in range(1, 6):
            dbl = getattr(self, f"branch7x7dbl_{i}")(dbl)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x))),
                dbl,
                self.branch_pool(_avg_pool(x)),
            ],
            1,
        )


class InceptionD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

    def forward(self, x):
        x7 = x
        for i in range(1, 5):
            x7 = getattr(self, f"branch7x7x3_{i}")(x7)
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), x7, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """Mixed_7b averages its pool branch (count_include_pad=False); Mixed_7c max-pools it (a TF graph quirk)."""

    def __init__(self, cin, *, max_pool):
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg_pool(x)
        return torch.cat(
            [
                self.branch1x1(x),
                self.branch3x3_2a(b3),
                self.branch3x3_2b(b3),
                self.branch3x3dbl_3a(dbl),
                self.branch3x3dbl_3b(dbl),
                self.branch_pool(pooled),
            ],
            1,
        )


def resize_like_tensorflow1(x, size):
    """Bilinear resize of (N, C, H, W) as TF 1.x `resize_bilinear(align_corners=False)` in the original FID graph:
    output pixel i samples input coordinate i * in / out (no half-pixel shift, unlike F.interpolate), clamped."""
    for axis, length in ((2, x.shape[2]), (3, x.shape[3])):
        source = torch.arange(size, device=x.device, dtype=torch.float64) * (length / size)
        low = source.floor().long().clamp(max=length - 1)
        high = (low + 1).clamp(max=length - 1)
        weight = (source - low).to(x.dtype).view([-1 if d == axis else 1 for d in range(4)])
        x = x.index_select(axis, low) * (1 - weight) + x.index_select(axis, high) * weight
    return x


class FidInceptionV3(nn.Module):
    """(N, 3, H, W) in [0, 1] -> (pool3 features (N, 2048), unbiased logits (N, 1008)).

    Preprocessing as torch-fidelity (bit-exact with the TF graph, its authors say): values 0..255, resized to 299
    like TF 1.x, then (x - 128) / 128. The logits are `pool3 @ fc.W^T` without the bias, as the original
    Inception Score code (and torch-fidelity's `logits_unbiased`) computes them.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.Mixed_5b = InceptionA(192, pool_features=32)
        self.Mixed_5c = InceptionA(256, pool_features=64)
        self.Mixed_5d = InceptionA(288, pool_features=64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b = InceptionC(768, c7=128)
        self.Mixed_6c = InceptionC(768, c7=160)
        self.Mixed_6d = InceptionC(768, c7=160)
        self.Mixed_6e = InceptionC(768, c7=192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b = InceptionE(1280, max_pool=False)
        self.Mixed_7c = InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    def forward(self, x):
        x = (resize_like_tensorflow1(x * 255, 299) - 128) / 128  # (N, 3, 299, 299)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))  # (N, 64, 147, 147)
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)  # (N, 192, 35, 35)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)  # ... (N, 2048, 8, 8)
        pool3 = x.mean(dim=(2, 3))  # (N, 2048)
        return pool3, pool3 @ self.fc.weight.T
