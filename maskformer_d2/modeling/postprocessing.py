"""Turning per-query (class logits, mask logits) into semantic, panoptic and instance outputs.

Single-image functions; ``mask_cls`` is (Q, K+1) class logits (last = no object) and
``mask_pred`` is (Q, H, W) mask logits, already at the resolution the result should have.
The results equal the official MaskFormer / Mask2Former ``*_inference`` methods; the loops
over queries of the official panoptic code are replaced by per-query counts computed at once
(one host transfer), which gives identical segments.

``sigmoid`` is ``canonical_sigmoid`` (each element by the vectorized path, so an element's value
does not depend on its position or the thread count) and instance mask scores sum exactly: the
results equal ``banded_postprocessing.postprocess_in_bands`` bit for bit, whatever its band size.
"""
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

from .banded_postprocessing import (
    segments_from_counts, bilinear_resize, binary_mask_scores, canonical_sigmoid, topk_query_classes,
)

__all__ = ["sem_seg_postprocess", "semantic_inference", "panoptic_inference", "instance_inference"]


def sem_seg_postprocess(result: torch.Tensor, img_size: Sequence[int], output_height: int, output_width: int):
    """Crop the padding away and resize to the requested output size.

    Args:
        result: (C, Hp, Wp) scores or logits at the padded input resolution.
        img_size: (h, w) of the image inside the padded tensor.
        output_height, output_width: size of the original image (``height``/``width`` inputs).

    Returns:
        (C, output_height, output_width), bilinear, ``align_corners=False`` (as detectron2's),
        by ``bilinear_resize``: the values post-processing in bands gives, on any thread count.
    """
    result = result[:, : img_size[0], : img_size[1]]
    if tuple(result.shape[-2:]) == (output_height, output_width):
        # bilinear resizing to the same size is the identity: skip a full-resolution copy
        return result
    return bilinear_resize(result, output_height, output_width)


def semantic_inference(mask_cls: torch.Tensor, mask_pred: torch.Tensor,
                       mask_prob: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Per-class scores (K, H, W) = sum over queries of p(class) * sigmoid(mask).

    ``mask_prob``: ``canonical_sigmoid(mask_pred)`` when the caller already has it (it is the largest
    tensor of the post-processing: computing it once serves all three tasks)."""
    probs = F.softmax(mask_cls, dim=-1)[..., :-1]
    return torch.einsum("qc,qhw->chw", probs, canonical_sigmoid(mask_pred) if mask_prob is None else mask_prob)


def panoptic_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    object_mask_threshold: float,
    overlap_threshold: float,
    thing_ids: Iterable[int],
    require_mask_prob: bool = True,
    mask_prob: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, List[Dict]]:
    """Non-overlapping segments from the confident queries.

    A query is kept when its best class is not "no object" and its probability exceeds
    ``object_mask_threshold``. Each pixel goes to the kept query with the highest
    ``p(class) * sigmoid(mask)``. A query becomes a segment when its pixels are at least
    ``overlap_threshold`` of its own ``sigmoid(mask) >= 0.5`` area; stuff queries of the same
    class share one segment id.

    Args:
        require_mask_prob: Mask2Former rule (True): a segment's pixels must also have
            ``sigmoid(mask) >= 0.5`` and be non-empty. MaskFormer rule (False): argmax only.
        mask_prob: ``canonical_sigmoid(mask_pred)`` if already computed.

    Returns:
        ``panoptic_seg`` int32 (H, W), 0 = void, and ``segments_info``: list of
        ``{"id", "isthing", "category_id", "score"}``; ``score`` is the class probability of
        the segment's query (for stuff merged from several queries, the highest), as in
        detectron2's Panoptic FPN outputs (the official Mask2Former gives no score).
    """
    num_classes = mask_cls.shape[-1] - 1
    scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
    keep = labels.ne(num_classes) & (scores > object_mask_threshold)
    cur_scores, cur_classes = scores[keep], labels[keep]
    cur_masks = (canonical_sigmoid(mask_pred) if mask_prob is None else mask_prob)[keep]
    h, w = mask_pred.shape[-2:]
    num_kept = cur_masks.shape[0]
    if num_kept == 0:
        return torch.zeros((h, w), dtype=torch.int32, device=mask_pred.device), []

    mask_ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)  # (H, W) winning kept query
    foreground = cur_masks >= 0.5  # (K, H, W)
    mask_area = torch.bincount(mask_ids.flatten(), minlength=num_kept)
    original_area = foreground.flatten(1).sum(1)
    if require_mask_prob:
        winner_foreground = torch.gather(foreground, 0, mask_ids[None])[0]
        segment_area = torch.bincount(mask_ids[winner_foreground], minlength=num_kept)
    else:
        segment_area = mask_area
    stats = torch.stack([mask_area, original_area, segment_area, cur_classes]).cpu().tolist()
    query_scores = cur_scores.cpu().tolist()

    segment_of_query, segments_info = segments_from_counts(stats, query_scores, thing_ids, overlap_threshold)

    lookup = torch.tensor(segment_of_query, dtype=torch.int32, device=mask_pred.device)
    panoptic_seg = lookup[mask_ids]
    if require_mask_prob:
        panoptic_seg = panoptic_seg * winner_foreground
    return panoptic_seg, segments_info


def instance_inference(
    mask_cls: torch.Tensor,
    mask_pred: torch.Tensor,
    *,
    test_topk_per_image: int,
    thing_ids: Optional[Iterable[int]] = None,
    mask_prob: Optional[torch.Tensor] = None,
) -> Instances:
    """Top-k (query, class) pairs as instances (Mask2Former).

    The flattened (Q * K) class probabilities give the ``test_topk_per_image`` best pairs
    (``topk(sorted=False)``, the official call, so the order is the torch build's); each
    instance takes its query's binary mask ``mask_pred > 0`` and scores
    ``p(class) * mean sigmoid(mask) inside the binary mask`` (the sum exact, the mean
    float32). ``thing_ids`` (given when panoptic inference is on) keeps only thing classes.
    Boxes are zeros, as officially. ``mask_prob``: ``canonical_sigmoid(mask_pred)`` if
    already computed.

    Returns:
        ``Instances`` of size (H, W) with ``pred_masks`` float (N, H, W) in {0, 1},
        ``pred_boxes`` zeros, ``scores`` (N,), ``pred_classes`` int64 (N,).
    """
    scores_per_image, labels_per_image, query_indices = topk_query_classes(mask_cls, test_topk_per_image, thing_ids)

    # Per-query quantities first: a query can appear once per class among the top-k. The sum of
    # probabilities inside a binary mask is exact in float64 (they are multiples of 2^-24 there),
    # so it does not depend on summation order (the same in bands of rows).
    positive = mask_pred > 0
    binary = positive.float()
    prob = canonical_sigmoid(mask_pred) if mask_prob is None else mask_prob
    count = positive.flatten(1).sum(1)
    prob_sum = (prob * positive).flatten(1).sum(1, dtype=torch.float64)
    mask_scores = binary_mask_scores(prob_sum, count)

    result = Instances(tuple(mask_pred.shape[-2:]))
    result.pred_masks = binary[query_indices]
    result.pred_boxes = Boxes(torch.zeros(len(query_indices), 4, device=mask_pred.device))
    result.scores = scores_per_image * mask_scores[query_indices]
    result.pred_classes = labels_per_image
    return result
