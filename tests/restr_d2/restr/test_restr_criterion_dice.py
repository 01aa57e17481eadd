"""The optional dice term of the ReSTR loss (off by default, so parity is untouched)."""
import torch

from restr_d2.modeling.restr.criterion import ReferringCriterion


def test_dice_off_by_default_and_hand_computed_when_on():
    pixel = torch.tensor([[[[0.0, 2.0], [-2.0, 0.0]]]]).repeat(1, 1, 8, 8)  # (1,1,16,16)
    patch = torch.zeros(1, 1, 1, 1)
    gt = torch.zeros(1, 1, 16, 16)
    gt[..., :8, :] = 1
    assert set(ReferringCriterion(16)(pixel, patch, gt)) == {"loss_pixel", "loss_patch"}
    crit = ReferringCriterion(16, dice_weight=0.5)
    losses = crit(pixel, patch, gt)
    p = pixel.sigmoid().flatten()
    g = gt.flatten()
    expected = 1 - (2 * (p * g).sum() + 1) / (p.sum() + g.sum() + 1)
    assert torch.allclose(losses["loss_dice"], expected)
    assert crit.weights["loss_dice"] == 0.5
