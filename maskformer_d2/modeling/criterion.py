"""Set-prediction losses of MaskFormer and Mask2Former.

Per decoder layer (final, then every ``aux_outputs`` entry in order): Hungarian matching,
then

* ``loss_ce``: cross-entropy over K+1 classes, unmatched queries -> no-object class, whose
  weight is ``eos_coef`` (the persistent ``empty_weight`` buffer);
* ``loss_mask`` and ``loss_dice`` over the matched masks, normalised by the number of
  ground-truth masks averaged across processes. Where the masks are compared:

  * ``num_points=None`` (MaskFormer): predictions upsampled bilinearly to the target size,
    every pixel used;
  * ``num_points=N`` (Mask2Former): ``num_points`` PointRend importance-sampled points per
    matched mask (``oversample_ratio``, ``importance_sample_ratio``).

  ``mask_loss_type`` selects the per-point loss: "sigmoid_ce" (Mask2Former) or "focal"
  (MaskFormer; alpha 0.25, gamma 2).

Auxiliary-layer keys get the suffix ``_i`` for ``aux_outputs[i]``.
"""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from segmentation_core.modeling.losses import dice_loss

from .matcher import MASK_COST_TYPES, HungarianMatcher
from .point_sampling import calculate_uncertainty, get_uncertain_point_coords_with_randomness, point_sample

__all__ = ["SetCriterion", "dice_loss", "sigmoid_ce_loss", "sigmoid_focal_loss"]

Indices = List[Tuple[torch.Tensor, torch.Tensor]]


def sigmoid_ce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: float) -> torch.Tensor:
    """Binary cross-entropy, mean over points, summed over masks / num_masks. (M, P) inputs."""
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    return loss.mean(1).sum() / num_masks


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, num_masks: float, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Sigmoid focal loss (RetinaNet), mean over points, summed over masks / num_masks. (M, P) inputs."""
    probs = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = probs * targets + (1 - probs) * (1 - targets)
    loss = ce * ((1 - p_t) ** gamma)
    if alpha >= 0:
        loss = (alpha * targets + (1 - alpha) * (1 - targets)) * loss
    return loss.mean(1).sum() / num_masks


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


class SetCriterion(nn.Module):
    """Matching + losses for mask classification.

    Args:
        num_classes: K, without the no-object class.
        matcher: assigns queries to targets per image.
        weight_dict: loss name -> weight; the meta-architecture applies it (kept here so the
            training loop and the losses agree on the names).
        eos_coef: cross-entropy weight of the no-object class.
        losses: subset of ("labels", "masks"), computed in this order.
        num_points: None for full-resolution mask losses (MaskFormer), else points per mask.
        oversample_ratio, importance_sample_ratio: PointRend sampling (with ``num_points``).
        mask_loss_type: "sigmoid_ce" or "focal".
    """

    def __init__(
        self,
        num_classes: int,
        matcher: HungarianMatcher,
        weight_dict: Dict[str, float],
        eos_coef: float,
        losses: Sequence[str] = ("labels", "masks"),
        num_points: Optional[int] = None,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        mask_loss_type: str = "sigmoid_ce",
    ):
        super().__init__()
        unknown = set(losses) - {"labels", "masks"}
        if unknown:
            raise ValueError(f"unknown losses {sorted(unknown)}; supported: 'labels', 'masks'")
        if mask_loss_type not in MASK_COST_TYPES:
            raise ValueError(f"mask_loss_type must be one of {MASK_COST_TYPES}; got {mask_loss_type!r}")
        if num_points is not None and num_points <= 0:
            raise ValueError(f"num_points must be > 0, or None for full-resolution masks; got {num_points}")
        self.num_classes = num_classes
        self.matcher = matcher
        self.weight_dict = weight_dict
        self.eos_coef = eos_coef
        self.losses = list(losses)
        self.num_points = num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.mask_loss_type = mask_loss_type
        empty_weight = torch.ones(num_classes + 1)
        empty_weight[-1] = eos_coef
        # Persistent: official checkpoints contain ``criterion.empty_weight``.
        self.register_buffer("empty_weight", empty_weight)

    # ----------------------------------------------------------------------------------- losses
    def loss_labels(self, outputs, targets, indices: Indices, num_masks: float) -> Dict[str, torch.Tensor]:
        logits = outputs["pred_logits"].float()
        batch_idx, src_idx = self._src_permutation_idx(indices)
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.int64, device=logits.device)
        target_classes[batch_idx, src_idx] = torch.cat(
            [t["labels"][tgt] for t, (_, tgt) in zip(targets, indices)]
        ).to(logits.device)
        loss = F.cross_entropy(logits.transpose(1, 2), target_classes, self.empty_weight)
        return {"loss_ce": loss}

    def loss_masks(self, outputs, targets, indices: Indices, num_masks: float) -> Dict[str, torch.Tensor]:
        src = self._matched_mask_logits(outputs, indices)  # (M, H, W)
        if self.num_points is not None:
            coords, labels = self._sample_matched_points(outputs, targets, indices, src)
            logits = point_sample(src[:, None], coords, align_corners=False).squeeze(1)
        else:
            tgt = self._matched_target_masks(targets, indices, src)  # (M, Ht, Wt)
            logits = F.interpolate(src[:, None], size=tgt.shape[-2:], mode="bilinear", align_corners=False)
            logits = logits[:, 0].flatten(1)
            labels = tgt.flatten(1)
        return self._point_losses(logits, labels, num_masks)

    def _point_losses(self, logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> Dict[str, torch.Tensor]:
        """``loss_mask`` and ``loss_dice`` of (M, P) logits against (M, P) labels."""
        mask_loss = sigmoid_focal_loss if self.mask_loss_type == "focal" else sigmoid_ce_loss
        return {"loss_mask": mask_loss(logits, labels, num_masks), "loss_dice": dice_loss(logits, labels, num_masks)}

    @torch.no_grad()
    def _sample_matched_points(self, outputs, targets, indices: Indices, src: Optional[torch.Tensor] = None):
        """Importance-sampled points of the matched masks (M, num_points, 2) and the ground truth
        there (M, num_points). ``src``: the matched mask logits, when already computed; else
        the matched rows of ``pred_masks``, as the official criterion samples them (with
        ``pred_mask_embed`` the decoder computes them without autograd; recomputing the matched
        masks here cost one product over the mask features per prediction, ~7 ms at 2 x 512 x
        512, and rounds differently in the last bit where the product has fewer rows)."""
        if src is None:
            batch_idx, src_idx = self._src_permutation_idx(indices)
            src = outputs["pred_masks"][batch_idx, src_idx]
        coords = self.sample_points(src[:, None])
        one_size = len({tuple(t["masks"].shape[-2:]) for t in targets}) == 1
        if one_size and all(len(torch.unique(tgt)) == len(tgt) for _, tgt in indices):
            return coords, self._matched_target_points(targets, indices, coords, src)
        tgt = self._matched_target_masks(targets, indices, src)  # (M, Ht, Wt), padded to a common size
        return coords, point_sample(tgt[:, None], coords, align_corners=False).squeeze(1)

    @staticmethod
    def _matched_target_points(targets, indices: Indices, coords: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The matched GT masks read at the matched predictions' points: coords (M, P, 2) ->
        (M, P), for targets whose masks share one size. Each image's masks (N, H, W) are read as
        they are, every target at the points of the prediction matched to it (the caller checks
        that no target is matched twice), instead of copying the matched masks into an (M, H, W)
        stack first (the stack's `cat` alone was ~12 ms per prediction of a 2 x 512 x 512 CPU
        training step, 1 thread).
        ``grid_sample`` reads every mask of its batch on its own, so the values are those of the
        stack bit for bit (tested)."""
        labels = None
        start = 0
        for t, (_, tgt) in zip(targets, indices):
            tgt = tgt.to(coords.device)
            count = len(tgt)
            if count == 0:
                continue
            masks = t["masks"].to(like)
            at_targets = coords.new_zeros((masks.shape[0],) + coords.shape[1:])
            at_targets[tgt] = coords[start:start + count]
            sampled = point_sample(masks[:, None], at_targets, align_corners=False).squeeze(1)  # (N, P)
            if labels is None:
                labels = sampled.new_zeros(coords.shape[:2])
            labels[start:start + count] = sampled[tgt]
            start += count
        return labels if labels is not None else coords.new_zeros(coords.shape[:2])

    def sample_points(self, mask_logits: torch.Tensor) -> torch.Tensor:
        """(M, 1, H, W) matched mask logits -> (M, num_points, 2). Tests override this to replay points."""
        return get_uncertain_point_coords_with_randomness(
            mask_logits, calculate_uncertainty, self.num_points, self.oversample_ratio, self.importance_sample_ratio
        )

    # ---------------------------------------------------------------------------------- helpers
    @staticmethod
    def _src_permutation_idx(indices: Indices) -> Tuple[torch.Tensor, torch.Tensor]:
        batch_idx = torch.cat([torch.full_like(src, i) for i, (src, _) in enumerate(indices)])
        src_idx = torch.cat([src for src, _ in indices])
        return batch_idx, src_idx

    def _matched_mask_logits(self, outputs, indices: Indices) -> torch.Tensor:
        """The matched queries' mask logits (M, H, W), image by image in matched order. From
        ``pred_masks``, or, where the decoder computed those without autograd
        (``MultiScaleMaskedTransformerDecoder(matched_mask_grad=True)`` in training), recomputed
        from ``pred_mask_embed`` (B, Q, C) and ``mask_features`` (B, C, H, W) for the matched
        queries only: the gradient an unmatched query's mask would get is zero."""
        if "pred_mask_embed" not in outputs:
            batch_idx, src_idx = self._src_permutation_idx(indices)
            return outputs["pred_masks"][batch_idx, src_idx]
        return self._matched_masks_from_embeddings([outputs["pred_mask_embed"]], outputs["mask_features"],
                                                   [indices])[0]

    @staticmethod
    def _matched_masks_from_embeddings(embeds: Sequence[torch.Tensor], features: torch.Tensor,
                                       indices: Sequence[Indices]) -> List[torch.Tensor]:
        """Per prediction, the matched queries' mask logits (M_i, H, W) from its embeddings
        ``embeds[i]`` (B, Q, C) and the shared ``features`` (B, C, H, W), in one bmm over the
        batch: each image's matched embeddings of every prediction side by side, padded to the
        largest count. Its backward yields the feature gradient in one product with K = the
        number of rows (per-image or per-prediction products each write a (B, C, H, W) gradient,
        ten of them with K ~ 5 for Mask2Former's ten predictions, which the CPU runs at memory
        speed)."""
        picked, rows, width = [], [], 0
        for embed, layer_indices in zip(embeds, indices):
            counts = [len(src) for src, _ in layer_indices]
            slots = torch.zeros((len(layer_indices), max(max(counts), 1)), dtype=torch.int64, device=embed.device)
            for b, (src, _) in enumerate(layer_indices):
                slots[b, : len(src)] = src.to(embed.device)
            picked.append(embed.gather(1, slots[..., None].expand(-1, -1, embed.shape[-1])))  # (B, Mmax, C)
            rows.append((counts, width))
            width += slots.shape[1]
        masks = torch.bmm(torch.cat(picked, 1), features.flatten(2))  # (B, width, H*W)
        index = torch.cat([torch.arange(n) + (b * width + offset)
                           for counts, offset in rows for b, n in enumerate(counts)])
        matched = masks.view(-1, *features.shape[-2:]).index_select(0, index.to(masks.device))
        return list(matched.split([sum(counts) for counts, _ in rows]))

    @staticmethod
    def _matched_target_masks(targets, indices: Indices, like: torch.Tensor) -> torch.Tensor:
        """Matched GT masks in matched order, zero-padded to the largest mask size of the batch."""
        height = max(t["masks"].shape[-2] for t in targets)
        width = max(t["masks"].shape[-1] for t in targets)
        chunks = []
        for t, (_, tgt) in zip(targets, indices):
            masks = t["masks"][tgt.to(t["masks"].device)].to(like)
            if masks.shape[-2:] != (height, width):
                masks = F.pad(masks, (0, width - masks.shape[-1], 0, height - masks.shape[-2]))
            chunks.append(masks)
        return torch.cat(chunks)

    @staticmethod
    def _float_masks_once(targets: Sequence[Dict[str, torch.Tensor]]) -> List[Dict[str, torch.Tensor]]:
        """On CPU, the targets with their bool / integer ``masks`` converted to float32 once:
        the matcher and the mask loss of every prediction point-sample them as floats, which
        otherwise converts each image's masks twice per prediction (20 passes over the masks
        per Mask2Former step at batch 2). Same values (0 / 1; float16 / bfloat16 predictions
        convert them further, exactly). The targets themselves are not modified."""
        if any(t["masks"].device.type != "cpu" or t["masks"].is_floating_point() for t in targets):
            return list(targets)
        return [dict(t, masks=t["masks"].to(torch.float32)) for t in targets]

    def _num_masks(self, targets, device: torch.device) -> float:
        num_masks = torch.as_tensor([float(sum(len(t["labels"]) for t in targets))], device=device)
        world_size = _world_size()
        if world_size > 1:
            dist.all_reduce(num_masks)
        return torch.clamp(num_masks / world_size, min=1).item()

    def get_loss(self, name: str, outputs, targets, indices: Indices, num_masks: float):
        if name == "labels":
            return self.loss_labels(outputs, targets, indices, num_masks)
        return self.loss_masks(outputs, targets, indices, num_masks)

    # ---------------------------------------------------------------------------------- forward
    def forward(self, outputs: Dict, targets: Sequence[Dict[str, torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """
        Args:
            outputs: ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, H, W) and optionally
                ``aux_outputs``: list of dicts with the same two keys; each may also carry
                ``pred_mask_embed`` and ``mask_features`` (see ``_matched_mask_logits``).
            targets: per image ``labels`` int64 (N,), ``masks`` (N, H', W').

        Returns:
            Unweighted losses: ``loss_ce``, ``loss_mask``, ``loss_dice`` and ``*_i`` per aux layer.
        """
        if targets is None:
            raise ValueError("SetCriterion needs targets: training inputs must carry 'instances'")
        num_masks = self._num_masks(targets, outputs["pred_logits"].device)
        targets = self._float_masks_once(targets)
        layers = [{k: v for k, v in outputs.items() if k != "aux_outputs"}]
        layers += list(outputs.get("aux_outputs", []))
        maskless = [i for i, layer in enumerate(layers) if "pred_masks" not in layer]
        if maskless:
            raise ValueError(
                f"SetCriterion: predictions {maskless} (0 = the last layer, then aux_outputs) carry no "
                "'pred_masks'; the matcher and the mask losses need every layer's masks. A head called "
                "with aux_masks=False (the inference network, MaskFormer.network) leaves them out: call "
                "it with the default aux_masks=True for training."
            )
        losses = {}
        # Predictions whose masks the criterion recomputes (see _matched_mask_logits) from one
        # mask_features: their point logits with autograd come from one product at the end.
        batched = (self.num_points is not None and "masks" in self.losses
                   and all("pred_mask_embed" in layer for layer in layers)
                   and all(layer["mask_features"] is layers[0]["mask_features"] for layer in layers))
        pending = []  # (suffix, indices, point coords, point labels) of the batched mask losses
        # Layer by layer (match, then losses) so random draws happen in the reference order.
        for i, layer in enumerate(layers):
            indices = self.matcher(layer, targets)
            suffix = "" if i == 0 else f"_{i - 1}"
            for name in self.losses:
                if name == "masks" and batched:
                    pending.append((suffix, indices, *self._sample_matched_points(layer, targets, indices)))
                    losses["loss_mask" + suffix] = losses["loss_dice" + suffix] = None  # keeps the key order
                    continue
                for k, v in self.get_loss(name, layer, targets, indices, num_masks).items():
                    losses[k + suffix] = v
        if pending:
            masks = self._matched_masks_from_embeddings(
                [layer["pred_mask_embed"] for layer in layers], layers[0]["mask_features"],
                [indices for _, indices, _, _ in pending])
            for src, (suffix, _, coords, labels) in zip(masks, pending):
                logits = point_sample(src[:, None], coords, align_corners=False).squeeze(1)
                losses.update({k + suffix: v for k, v in self._point_losses(logits, labels, num_masks).items()})
        return losses

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, eos_coef={self.eos_coef}, losses={self.losses}, "
            f"num_points={self.num_points}, oversample_ratio={self.oversample_ratio}, "
            f"importance_sample_ratio={self.importance_sample_ratio}, mask_loss_type={self.mask_loss_type!r}"
        )
