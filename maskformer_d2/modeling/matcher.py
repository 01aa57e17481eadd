"""Hungarian matching between predicted masks and ground-truth segments.

One module serves both models; the difference is where the mask costs are evaluated:

* MaskFormer (``num_points=None``): on the prediction grid, ground truth resized to it with
  nearest neighbour; mask cost is sigmoid focal.
* Mask2Former (``num_points=N``): on ``num_points`` uniform random points drawn once per image
  (``torch.rand(1, P, 2)``, image by image) and shared by all queries and targets of that
  image; mask cost is sigmoid binary cross-entropy.

The costs of all images are computed in one batched pass (targets padded to the largest
count); only the assignment itself runs per image, on the host.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from .point_sampling import point_sample

__all__ = ["HungarianMatcher", "batch_dice_cost", "batch_sigmoid_ce_cost", "batch_sigmoid_focal_cost"]

MASK_COST_TYPES = ("sigmoid_ce", "focal")


def batch_dice_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise dice cost. logits (B, Q, P), targets (B, N, P) in {0, 1} -> (B, Q, N)."""
    probs = logits.sigmoid()
    numerator = 2 * torch.einsum("bqp,bnp->bqn", probs, targets)
    denominator = probs.sum(-1)[:, :, None] + targets.sum(-1)[:, None, :]
    return 1 - (numerator + 1) / (denominator + 1)


def batch_sigmoid_ce_cost(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Pairwise mean binary cross-entropy. logits (B, Q, P), targets (B, N, P) -> (B, Q, N)."""
    num_points = logits.shape[-1]
    # BCE(x, t) = t * BCE(x, 1) + (1 - t) * BCE(x, 0) for t in [0, 1], with BCE(x, 0) =
    # softplus(x) and BCE(x, 1) = softplus(x) - x: summed over points, the pair cost is
    # sum_p softplus(x) - sum_p x * t, one softplus pass and one matmul (not two BCE passes over
    # materialised ones/zeros and two matmuls).
    neg = F.softplus(logits).sum(-1)  # (B, Q)
    cost = neg[:, :, None] - torch.einsum("bqp,bnp->bqn", logits, targets)
    return cost / num_points


def batch_sigmoid_focal_cost(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Pairwise mean sigmoid focal loss (RetinaNet). logits (B, Q, P), targets (B, N, P) -> (B, Q, N)."""
    num_points = logits.shape[-1]
    probs = logits.sigmoid()
    # BCE(x, 1) = softplus(-x), BCE(x, 0) = softplus(x)
    pos = ((1 - probs) ** gamma) * F.softplus(-logits)
    neg = (probs**gamma) * F.softplus(logits)
    if alpha >= 0:
        pos = pos * alpha
        neg = neg * (1 - alpha)
    cost = torch.einsum("bqp,bnp->bqn", pos, targets) + torch.einsum("bqp,bnp->bqn", neg, 1 - targets)
    return cost / num_points


class HungarianMatcher(nn.Module):
    """Optimal one-to-one assignment of queries to targets, per image.

    Cost = ``cost_mask * mask_cost + cost_class * (-p(class)) + cost_dice * dice_cost``.
    Queries left unassigned are trained towards the no-object class.

    Args:
        cost_class: weight of the negated class probability.
        cost_mask: weight of the per-pixel mask cost (``mask_cost_type``).
        cost_dice: weight of the dice cost.
        num_points: None compares masks on the full prediction grid (MaskFormer); N samples
            that many uniform points per image (Mask2Former).
        mask_cost_type: "sigmoid_ce" or "focal" (alpha 0.25, gamma 2).
    """

    def __init__(
        self,
        cost_class: float = 1.0,
        cost_mask: float = 1.0,
        cost_dice: float = 1.0,
        num_points: Optional[int] = None,
        mask_cost_type: str = "sigmoid_ce",
    ):
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("all matcher costs are 0; set at least one of CLASS/MASK/DICE_WEIGHT > 0")
        if mask_cost_type not in MASK_COST_TYPES:
            raise ValueError(f"mask_cost_type must be one of {MASK_COST_TYPES}; got {mask_cost_type!r}")
        if num_points is not None and num_points <= 0:
            raise ValueError(f"num_points must be > 0, or None for full-resolution masks; got {num_points}")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points
        self.mask_cost_type = mask_cost_type

    def draw_points(self, image_index: int, device: torch.device) -> torch.Tensor:
        """Uniform (1, num_points, 2) coordinates for one image. Tests override this to replay points."""
        return torch.rand(1, self.num_points, 2, device=device)

    def _mask_cost(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.mask_cost_type == "focal":
            return batch_sigmoid_focal_cost(logits, targets)
        return batch_sigmoid_ce_cost(logits, targets)

    def _sample_masks(
        self, pred_masks: torch.Tensor, targets: Sequence[Dict[str, torch.Tensor]], max_targets: int
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Returns prediction logits (B, Q, P) and padded target masks (B, N_max, P) on common points."""
        batch, _, height, width = pred_masks.shape
        tgt = pred_masks.new_zeros(batch, max_targets, height * width if self.num_points is None else self.num_points)
        if self.num_points is not None:
            coords = []
            for b, t in enumerate(targets):
                points = self.draw_points(b, pred_masks.device)
                coords.append(points)
                masks = t["masks"].to(pred_masks)
                if len(masks):
                    tgt[b, : len(masks)] = point_sample(masks[None], points, align_corners=False)[0]
            pred = point_sample(pred_masks, torch.cat(coords), align_corners=False)
        else:
            for b, t in enumerate(targets):
                masks = t["masks"].to(pred_masks)
                if len(masks):
                    masks = F.interpolate(masks[:, None], size=(height, width), mode="nearest")
                    tgt[b, : len(masks)] = masks.flatten(1)
            pred = pred_masks.flatten(2)
        return pred, tgt

    @torch.no_grad()
    def forward(
        self, outputs: Dict[str, torch.Tensor], targets: Sequence[Dict[str, torch.Tensor]]
    ) -> List[Tuple[torch.Tensor, torch.Tensor]]:
        """
        Args:
            outputs: ``pred_logits`` (B, Q, K+1) and ``pred_masks`` (B, Q, H, W) logits.
            targets: per image, ``labels`` int64 (N,) and ``masks`` (N, H', W') binary.

        Returns:
            Per image ``(query_indices, target_indices)``, int64 CPU tensors of equal length
            min(Q, N), query indices ascending.
        """
        pred_logits, pred_masks = outputs["pred_logits"], outputs["pred_masks"]
        if len(targets) != pred_logits.shape[0]:
            raise ValueError(f"got {len(targets)} target dicts for a batch of {pred_logits.shape[0]} images")
        # The costs are not trained through and need full precision under AMP.
        pred_logits, pred_masks = pred_logits.float(), pred_masks.float()
        counts = [len(t["labels"]) for t in targets]
        max_targets = max(counts, default=0)

        probs = pred_logits.softmax(-1)
        labels = pred_logits.new_zeros(len(targets), max_targets, dtype=torch.int64)
        for b, t in enumerate(targets):
            labels[b, : counts[b]] = t["labels"]
        cost_class = -torch.gather(probs, 2, labels[:, None, :].expand(-1, probs.shape[1], -1))

        pred, tgt = self._sample_masks(pred_masks, targets, max_targets)
        cost = (
            self.cost_mask * self._mask_cost(pred, tgt)
            + self.cost_class * cost_class
            + self.cost_dice * batch_dice_cost(pred, tgt)
        )
        cost = cost.cpu()  # one host transfer for the whole batch
        indices = []
        for b, n in enumerate(counts):
            rows, cols = linear_sum_assignment(cost[b, :, :n].numpy())
            indices.append((torch.as_tensor(rows, dtype=torch.int64), torch.as_tensor(cols, dtype=torch.int64)))
        return indices

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
            f"num_points={self.num_points}, mask_cost_type={self.mask_cost_type!r}"
        )
