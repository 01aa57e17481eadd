"""ReSTR training loss: pixel BCE + ``patch_weight`` * patch BCE (official ``train_restr.py``),
optionally + ``dice_weight`` * pixel dice (ours, off by default)."""
from typing import Dict, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from segmentation_core.modeling.losses import dice_loss

__all__ = ["patch_labels", "ReferringCriterion"]


def patch_labels(gt_masks: torch.Tensor, patch_size: int, threshold: float = 0.8) -> torch.Tensor:
    """(B, 1, H, W) binary masks -> (B, 1, H/P, W/P) float labels ``count > threshold``.

    ``count`` is the number of foreground pixels in each P x P patch. Official quirk, kept on
    purpose: the default threshold 0.8 is compared with a pixel *count*, so every patch with at
    least one foreground pixel is positive (an older, commented-out version scaled it by P^2).
    """
    B, C, H, W = gt_masks.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"mask size {H}x{W} must be a multiple of the patch size {P}")
    counts = gt_masks.float().reshape(B, C, H // P, P, W // P, P).sum(dim=(3, 5))
    return (counts > threshold).float()


class ReferringCriterion(nn.Module):
    """Losses of one batch.

    ``forward(pixel_logits (B, 1, h, w), patch_logits (B, 1, H/P, W/P), gt_masks (B, 1, H, W))``
    -> ``{"loss_pixel", "loss_patch"}`` *unweighted* (means over all elements):

    * pixel: logits upsampled to (H, W) (bilinear, align_corners=True; a no-op when the decoder
      already outputs H x W), GT nearest-resized to (H, W) (a no-op too), BCE with logits;
    * patch: BCE with logits against ``patch_labels(gt, P, patch_threshold)``.

    * dice (only when ``dice_weight > 0``): ``1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1)`` per
      image on the pixel probabilities, averaged. Not in the official recipe: when the referred
      object covers a few percent of the image (small objects, training from scratch), mean BCE
      is dominated by background pixels and the foreground rarely crosses 0.5; dice weighs the
      object as a whole.

    ``weights`` gives the factors the meta-architecture applies: pixel 1, patch ``patch_weight``
    (official ``alpha_loc`` 0.1; the official trainer sets it to 0 with ``--no_decoder``), dice
    ``dice_weight``.
    """

    def __init__(self, patch_size: int, patch_weight: float = 0.1, patch_threshold: float = 0.8,
                 dice_weight: float = 0.0):
        super().__init__()
        self.patch_size = int(patch_size)
        self.patch_weight = float(patch_weight)
        self.patch_threshold = float(patch_threshold)
        self.dice_weight = float(dice_weight)

    @property
    def weights(self) -> Dict[str, float]:
        w = {"loss_pixel": 1.0, "loss_patch": self.patch_weight}
        if self.dice_weight > 0:
            w["loss_dice"] = self.dice_weight
        return w

    def forward(
        self, pixel_logits: torch.Tensor, patch_logits: torch.Tensor, gt_masks: torch.Tensor
    ) -> Dict[str, torch.Tensor]:
        size: Tuple[int, int] = tuple(gt_masks.shape[-2:])
        gt = gt_masks.float()
        if tuple(pixel_logits.shape[-2:]) != size:
            pixel_logits = F.interpolate(pixel_logits, size=size, mode="bilinear", align_corners=True)
        p_labels = patch_labels(gt, self.patch_size, self.patch_threshold)
        losses = {
            "loss_pixel": F.binary_cross_entropy_with_logits(pixel_logits, gt),
            "loss_patch": F.binary_cross_entropy_with_logits(patch_logits, p_labels),
        }
        if self.dice_weight > 0:
            # per image, averaged over the batch
            losses["loss_dice"] = dice_loss(pixel_logits, gt, num_masks=gt.shape[0])
        return losses
