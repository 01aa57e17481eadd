"""The optional dice term of the ReSTR loss (off by default, so parity is untouched)."""
import pytest
import torch

from restr_d2.modeling.restr.criterion import ReferringCriterion


def test_dice_off_by_default_and_hand_computed_per_image_when_on():
    # image 0: logits 0, 2, -2, 0 in every 2x2 block -> sigmoid sums to 2.0 per block (128 over
    # the 16x16 image); the top half is the object (128 px), where the sigmoid sums to 64:
    # dice = 1 - (2 * 64 + 1) / (128 + 128 + 1) = 128 / 257.
    # image 1: an empty object predicted empty (logits -30): dice ~ 0.
    pixel = torch.stack([torch.tensor([[0.0, 2.0], [-2.0, 0.0]]).repeat(8, 8), torch.full((16, 16), -30.0)])[:, None]
    gt = torch.zeros(2, 1, 16, 16)
    gt[0, :, :8, :] = 1
    patch = torch.zeros(2, 1, 1, 1)
    assert set(ReferringCriterion(16)(pixel, patch, gt)) == {"loss_pixel", "loss_patch"}
    crit = ReferringCriterion(16, dice_weight=0.5)
    losses = crit(pixel, patch, gt)
    # the mean of the two images' dice (the whole batch as one mask would give 128 / 257)
    assert losses["loss_dice"].item() == pytest.approx((128 / 257 + 0.0) / 2, abs=1e-6)
    assert crit.weights["loss_dice"] == 0.5
