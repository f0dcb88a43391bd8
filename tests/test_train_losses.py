"""Training losses (train/losses.py): registered names, and their weighted sum as config.losses gives it."""

import torch
import torch.nn.functional as F
from torch import nn

from train.losses import LOSSES, WeightedLoss


def images(seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(2, 3, 16, 16, generator=generator), torch.rand(2, 3, 16, 16, generator=generator)


def test_one_loss_of_weight_1_is_that_loss_bit_for_bit_in_value_and_gradient():
    sr, hr = images()
    sr.requires_grad_(True)
    weighted = WeightedLoss({"l1": 1.0})(sr, hr)
    (expected_grad,) = torch.autograd.grad(F.l1_loss(sr, hr), sr)
    (grad,) = torch.autograd.grad(weighted, sr)
    assert torch.equal(weighted, F.l1_loss(sr, hr)) and torch.equal(grad, expected_grad)


def test_the_weighted_sum_of_every_registered_loss():
    sr, hr = images(1)
    assert set(LOSSES) == {"l1", "mse", "charbonnier"} and all(LOSSES.descriptions[name] for name in LOSSES)
    total = WeightedLoss({"l1": 1.0, "mse": 0.5, "charbonnier": 0.25})(sr, hr)
    charbonnier = torch.sqrt((sr - hr) ** 2 + 1e-6).mean()
    assert torch.allclose(total, F.l1_loss(sr, hr) + 0.5 * F.mse_loss(sr, hr) + 0.25 * charbonnier)


def test_a_loss_class_is_built_once_and_moves_with_the_sum():
    """The home of a loss with state (a perceptual or adversarial one): an nn.Module class, built with no arguments."""

    @LOSSES.register("test_scaled_l1", "L1 times a buffer, registered by this test")
    class ScaledL1(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("factor", torch.tensor(3.0))

        def forward(self, sr, hr):
            return self.factor * F.l1_loss(sr, hr)

    try:
        loss = WeightedLoss({"test_scaled_l1": 2.0}).to(torch.float64)
        assert loss.test_scaled_l1.factor.dtype == torch.float64  # a submodule: .to() reached it
        sr, hr = images(2)
        assert torch.allclose(loss(sr.double(), hr.double()), 6.0 * F.l1_loss(sr.double(), hr.double()))
    finally:
        del LOSSES["test_scaled_l1"], LOSSES.descriptions["test_scaled_l1"]
