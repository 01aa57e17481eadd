"""Mask losses shared by the families."""
import torch

__all__ = ["dice_loss"]


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Soft dice (+1 smoothing) of each mask, summed over masks / ``num_masks``.

    logits, targets: (M, ...) -- each mask is flattened; ``1 - (2 sum(p g) + 1) / (sum(p) + sum(g) + 1)``
    with ``p = sigmoid(logits)``. MaskFormer divides by the number of matched masks over all
    processes, ReSTR by the batch size (a mean over images).
    """
    probs = logits.sigmoid().flatten(1)
    targets = targets.flatten(1)
    numerator = 2 * (probs * targets).sum(-1)
    denominator = probs.sum(-1) + targets.sum(-1)
    return (1 - (numerator + 1) / (denominator + 1)).sum() / num_masks
