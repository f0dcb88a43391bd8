"""Training losses: a registry of named losses, and their weighted sum as the config's `losses` gives it.

    losses: {l1: 1.0}                # the recipes' loss (--loss l1 means the same)
    --losses '{l1: 1.0, mse: 0.5}'   # 1.0 x L1 + 0.5 x MSE

An entry is a function `loss(sr, hr) -> scalar tensor` (a stateless loss), or an `nn.Module` class built with no
arguments whose forward is that function: the home of a loss with state or parameters (a perceptual or an
adversarial one). `sr` and `hr` are float32 (B, 3, H, W) in [0, 1].
"""

import torch
import torch.nn.functional as F
from torch import nn

from train.registry import Registry

LOSSES = Registry("loss")


@LOSSES.register("l1", "mean absolute error (the PAN and SRResNet recipes' loss)")
def l1(sr, hr):
    return F.l1_loss(sr, hr)


@LOSSES.register("mse", "mean squared error (the error PSNR measures)")
def mse(sr, hr):
    return F.mse_loss(sr, hr)


@LOSSES.register("charbonnier", "mean of sqrt((sr - hr)^2 + 1e-6): L1 made smooth at zero")
def charbonnier(sr, hr, eps=1e-3):
    return torch.sqrt((sr - hr) ** 2 + eps**2).mean()


class WeightedLoss(nn.Module):
    """The sum of weight x loss(sr, hr) over `weights` (name -> weight, checked by the config), in its order.
    Loss modules become submodules: `.to(device)` moves their state with them."""

    def __init__(self, weights, *, registry=LOSSES):
        super().__init__()
        self.terms = []  # (weight, loss)
        for name, weight in weights.items():
            loss = registry[name]() if isinstance(registry[name], type) else registry[name]
            if isinstance(loss, nn.Module):
                self.add_module(name, loss)
            self.terms.append((float(weight), loss))

    def forward(self, sr, hr):
        # 1.0 x a loss is that loss bit for bit: {l1: 1.0} logs and trains exactly as a plain L1 does.
        total = None
        for weight, loss in self.terms:
            term = weight * loss(sr, hr)
            total = term if total is None else total + term
        return total
