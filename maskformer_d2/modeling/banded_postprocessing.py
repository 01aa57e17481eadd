"""Semantic / panoptic / instance post-processing in bands of output rows (bounded memory).

The whole-image functions of ``postprocessing`` need the (Q, H, W) mask logits at the output
resolution: 100 queries at 8000x8000 are 25.6 GB of float32, before ``sigmoid`` doubles it.
Here the mask logits stay at network resolution and are resized band by band (``rows`` output
rows at a time): every per-pixel quantity (probabilities, semantic scores, the panoptic argmax,
binary masks) is computed for one band and written out, every per-query quantity (panoptic
areas, instance mask sums) is accumulated over the bands. Peak memory is the outputs plus a few
(Q, rows, W) tensors.

The results are bit-for-bit those of the whole-image functions:

* The final bilinear resize (``align_corners=False``) is :func:`bilinear_resize`, here and in the
  whole-image path (``sem_seg_postprocess``): separable, each output value ``x0 * w0 + x1 * w1``
  computed by separate float32 multiplies and one add, each correctly rounded, so an element's
  value does not depend on the band, its position or the thread count. (ATen's CPU kernel does
  not qualify: its vectorized body contracts to fused multiply-adds and its result changes with
  the number of threads, by up to an ulp; ours is within an ulp or two of it.)
* ``canonical_sigmoid``: CPU ``sigmoid`` evaluates most elements with a vectorized ``exp`` and the
  last few of each thread's share with the scalar one, which may differ by one ulp, so the result
  of an element depended on where it sat in the tensor. Padding every call so that each thread's
  share is a multiple of the vector width makes every element take the vectorized path, in a
  band as in the whole image (the whole-image functions use it too).
* Semantic scores: one ``einsum`` (a GEMM over queries) per band; the BLAS sums each output column
  in the same order whatever the number of columns (verified by the tests for bands of one or
  more full rows).
* Instance scores: the sum of ``sigmoid`` over a binary mask is exact in float64 (probabilities
  above 0.5 are multiples of 2^-24), so it does not depend on the band split.
"""
import logging
from typing import Dict, Iterable, List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

__all__ = [
    "canonical_sigmoid",
    "RowBandResizer",
    "bilinear_resize",
    "band_rows_for_budget",
    "postprocess_in_bands",
    "resize_scores_in_bands",
    "unpack_instance_masks",
    "segments_from_counts",
]

logger = logging.getLogger(__name__)

# Elements per vectorized step of ATen's CPU loops (2 vectors of 8 (AVX2) or 16 (AVX-512)
# floats), rounded up; and the grain below which ATen does not split an elementwise op.
_VECTOR_BLOCK = 64
_ATEN_GRAIN_SIZE = 32768
# Smaller outputs are never split into bands: one band of such an output is small anyway.
MIN_BANDED_PIXELS = 65536


def canonical_sigmoid(x: torch.Tensor) -> torch.Tensor:
    """``x.sigmoid()`` with every element evaluated by the vectorized CPU path.

    The result of an element then does not depend on its position, the size of the tensor or
    the number of threads (the plain call evaluates the tail of each thread's share with the
    scalar ``exp``). On other devices ``sigmoid`` is already position-independent."""
    if x.device.type != "cpu":
        return x.sigmoid()
    flat = x.reshape(-1)
    n = flat.numel()
    threads = torch.get_num_threads()

    def shares_are_whole_blocks(size: int) -> bool:
        # ATen splits [0, size) into ceil(size / used) per thread, used = min(threads,
        # ceil(size / grain)): every share is then a multiple of the block
        used = max(1, min(threads, -(-size // _ATEN_GRAIN_SIZE)))
        return size % (_VECTOR_BLOCK * used) == 0

    head = n // (_VECTOR_BLOCK * threads) * _VECTOR_BLOCK * threads
    while head and not shares_are_whole_blocks(head):
        head -= _VECTOR_BLOCK * threads
    out = torch.empty_like(flat)
    if head:
        torch.sigmoid(flat[:head], out=out[:head])
    if head < n:
        # the rest (< a few thousand elements, one thread) padded to whole blocks
        tail = flat[head:]
        padded = torch.cat([tail, tail.new_zeros(-(-tail.numel() // _VECTOR_BLOCK) * _VECTOR_BLOCK - tail.numel())])
        out[head:] = padded.sigmoid()[: tail.numel()]
    return out.view(x.shape)


def _linear_taps(in_size: int, out_size: int, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices and weights of bilinear resizing ``in_size -> out_size``, align_corners=False.

    Returns (index0, index1, weight0, weight1), each (out_size,); position ``(i + 0.5) * in / out
    - 0.5`` clamped at 0, as ATen computes it."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    centers = torch.arange(out_size, dtype=torch.float32) + 0.5
    position = (centers.double() * scale.double() - 0.5).float().clamp(min=0)
    index0 = position.long()
    index1 = torch.where(index0 < in_size - 1, index0 + 1, index0)
    weight1 = (position - index0.float()).clamp(0, 1)
    weight0 = 1 - weight1
    return tuple(t.to(device) for t in (index0, index1, weight0, weight1))


def _mix(x0: torch.Tensor, weight0: torch.Tensor, x1: torch.Tensor, weight1: torch.Tensor) -> torch.Tensor:
    # two multiplies, then one add: three correctly rounded IEEE operations, never contracted to a
    # fused multiply-add, so the value of an element is the same in any tensor and on any thread
    return torch.mul(x0, weight0).add_(torch.mul(x1, weight1))


class RowBandResizer:
    """Rows ``[start, stop)`` of the bilinear resize (``align_corners=False``) of a (C, h, w)
    source to (out_h, out_w), computing only those rows; any band split gives the same values as
    the whole image (:func:`bilinear_resize`).

    Args:
        source: (C, h, w) float.
        out_h, out_w: the full output size.
    """

    def __init__(self, source: torch.Tensor, out_h: int, out_w: int):
        if source.dim() != 3:
            raise ValueError(f"RowBandResizer needs a (C, h, w) source; got shape {tuple(source.shape)}")
        self.source = source
        self.out_h, self.out_w = int(out_h), int(out_w)
        self.identity = tuple(source.shape[-2:]) == (self.out_h, self.out_w)
        if not self.identity:
            self.rows = self._taps(source.shape[1], self.out_h)
            self.columns = self._taps(source.shape[2], self.out_w)

    def _taps(self, in_size: int, out_size: int):
        index0, index1, weight0, weight1 = _linear_taps(in_size, out_size, self.source.device)
        return index0, index1, weight0.to(self.source.dtype), weight1.to(self.source.dtype)

    def band(self, start: int, stop: int) -> torch.Tensor:
        """(C, stop - start, out_w)."""
        if self.identity:
            return self.source[:, start:stop]
        index0, index1, weight0, weight1 = (t[start:stop] for t in self.rows)
        first, last = int(index0[0]), int(index1[-1])
        rows = self.source[:, first:last + 1]
        column0, column1, column_weight0, column_weight1 = self.columns
        # width first, on the source rows this band needs
        widened = _mix(rows[:, :, column0], column_weight0, rows[:, :, column1], column_weight1)
        weight0, weight1 = weight0.view(1, -1, 1), weight1.view(1, -1, 1)
        return _mix(widened[:, index0 - first], weight0, widened[:, index1 - first], weight1)


def bilinear_resize(source: torch.Tensor, out_h: int, out_w: int) -> torch.Tensor:
    """(C, h, w) -> (C, out_h, out_w), bilinear, ``align_corners=False``; the values of every band
    of :class:`RowBandResizer` (``F.interpolate``'s up to an ulp or two)."""
    return RowBandResizer(source, out_h, out_w).band(0, int(out_h))


def band_rows_for_budget(budget_bytes: float, channels: int, width: int) -> int:
    """Rows per band such that a (channels, rows, width) float32 band takes at most
    ``budget_bytes`` (at least one row); 0 = ``budget_bytes`` 0 = the whole image at once."""
    if budget_bytes <= 0:
        return 0
    return max(1, int(budget_bytes // (4 * max(1, channels) * max(1, width))))


def _bands(height: int, width: int, band_rows: int):
    step = height if band_rows <= 0 or height * width < MIN_BANDED_PIXELS else band_rows
    for start in range(0, height, step):
        yield start, min(height, start + step)


def pack_mask_rows(masks: torch.Tensor) -> torch.Tensor:
    """(N, r, W) bool -> (N, r, ceil(W / 8)) uint8, 8 pixels per byte along W, first pixel in
    the highest bit (``numpy.packbits`` order)."""
    return torch.from_numpy(np.packbits(masks.cpu().numpy(), axis=-1))


def unpack_instance_masks(instances: Instances) -> torch.Tensor:
    """The (N, H, W) bool masks of instances from ``COMPACT_OUTPUTS`` (``pred_masks_packed``).

    Unpacks all of them at once: index the instances first (``instances[i]``) to unpack a few."""
    width = instances.image_size[1]
    packed = instances.pred_masks_packed.cpu().numpy()
    return torch.from_numpy(np.unpackbits(packed, axis=-1, count=width).astype(bool))


def segments_from_counts(stats: List[List[int]], query_scores: List[float], thing_ids: Iterable[int],
                          overlap_threshold: float) -> Tuple[List[int], List[Dict]]:
    """The panoptic segment of each kept query (0 = none) and ``segments_info``.

    ``stats``: per kept query [argmax area, area of sigmoid >= 0.5, segment area, class]
    (as four lists)."""
    thing_ids = set(int(i) for i in thing_ids)
    segment_of_query = [0] * len(query_scores)
    segments_info = []
    stuff_segment = {}
    for k, (area, original, seg_area, pred_class) in enumerate(zip(*stats)):
        if not (area > 0 and original > 0 and seg_area > 0):
            continue
        if area / original < overlap_threshold:
            continue
        isthing = pred_class in thing_ids
        if not isthing and pred_class in stuff_segment:
            segment_of_query[k] = stuff_segment[pred_class]
            merged = segments_info[stuff_segment[pred_class] - 1]
            merged["score"] = max(merged["score"], float(query_scores[k]))
            continue
        segment_id = len(segments_info) + 1
        if not isthing:
            stuff_segment[pred_class] = segment_id
        segment_of_query[k] = segment_id
        segments_info.append({"id": segment_id, "isthing": bool(isthing), "category_id": int(pred_class),
                              "score": float(query_scores[k])})
    return segment_of_query, segments_info


def topk_query_classes(mask_cls: torch.Tensor, test_topk_per_image: int, thing_ids: Optional[Iterable[int]]):
    """Instance selection of Mask2Former: the ``test_topk_per_image`` best (query, class) pairs
    of the flattened (Q * K) class probabilities (``topk(sorted=False)``, the official call),
    only thing classes when ``thing_ids`` is given. Returns (scores, labels, query indices)."""
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    if test_topk_per_image > num_queries * num_classes:
        raise ValueError(
            f"TEST.DETECTIONS_PER_IMAGE={test_topk_per_image} exceeds num_queries * num_classes = "
            f"{num_queries * num_classes}; lower TEST.DETECTIONS_PER_IMAGE"
        )
    scores = F.softmax(mask_cls, dim=-1)[:, :-1]
    scores_per_image, topk_indices = scores.flatten(0, 1).topk(test_topk_per_image, sorted=False)
    labels_per_image = topk_indices % num_classes
    query_indices = topk_indices // num_classes
    if thing_ids is not None:
        things = torch.as_tensor(sorted(int(i) for i in thing_ids), dtype=labels_per_image.dtype)
        keep = torch.isin(labels_per_image, things.to(labels_per_image.device))
        scores_per_image, labels_per_image, query_indices = (
            scores_per_image[keep],
            labels_per_image[keep],
            query_indices[keep],
        )
    return scores_per_image, labels_per_image, query_indices


def binary_mask_scores(prob_sum: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """Mean probability inside each binary mask: float32 ``prob_sum / (count + 1e-6)`` from the
    exact float64 sum of ``sigmoid`` over ``mask > 0`` and the exact pixel count."""
    return prob_sum.float() / (count.float() + 1e-6)


def postprocess_in_bands(
    mask_cls: torch.Tensor,
    mask_logits: torch.Tensor,
    out_height: int,
    out_width: int,
    *,
    band_rows: int,
    semantic: bool = False,
    panoptic: Optional[Dict] = None,
    instance: Optional[Dict] = None,
    compact: bool = False,
) -> Dict:
    """Semantic / panoptic / instance results of one image, band by band.

    Args:
        mask_cls: (Q, K+1) class logits.
        mask_logits: (Q, h, w) mask logits whose bilinear resize to (out_height, out_width)
            (``align_corners=False``) are the masks of the result: the padded-size logits
            already cropped to the image (``sem_seg_postprocess`` without its resize).
        band_rows: output rows per band; 0 = the whole image in one band (also any output
            under ``MIN_BANDED_PIXELS``).
        semantic: produce ``sem_seg`` (K, H, W) float32 = ``semantic_inference``.
        panoptic: keyword arguments of ``panoptic_inference`` (``object_mask_threshold``,
            ``overlap_threshold``, ``thing_ids``, ``require_mask_prob``) or None.
        instance: keyword arguments of ``instance_inference`` (``test_topk_per_image``,
            ``thing_ids``) or None.
        compact: bounded outputs for huge images: ``sem_seg_labels`` int64 (H, W) (the argmax
            of ``sem_seg`` over classes) instead of ``sem_seg``, and instances with
            ``pred_masks_packed`` uint8 (N, H, ceil(W / 8)) (``unpack_instance_masks``) instead
            of the float ``pred_masks``.

    Returns:
        dict with ``sem_seg`` or ``sem_seg_labels``, ``panoptic_seg`` (int32 (H, W),
        segments_info) and ``instances``, as requested; equal to the whole-image functions.
    """
    device = mask_logits.device
    num_queries, num_classes = mask_cls.shape[0], mask_cls.shape[-1] - 1
    height, width = int(out_height), int(out_width)
    if height * width < MIN_BANDED_PIXELS:
        band_rows = 0
    resizer = RowBandResizer(mask_logits, height, width)
    mask_cls = mask_cls.to(mask_logits)
    result = {}

    if semantic:
        class_probs = F.softmax(mask_cls, dim=-1)[..., :-1]
        if compact:
            sem_seg_labels = torch.empty((height, width), dtype=torch.int64, device=device)
        else:
            sem_seg = torch.empty((num_classes, height, width), dtype=mask_logits.dtype, device=device)

    if panoptic is not None:
        scores, labels = F.softmax(mask_cls, dim=-1).max(-1)
        keep = labels.ne(num_classes) & (scores > panoptic["object_mask_threshold"])
        kept_queries = keep.nonzero().flatten()
        cur_scores, cur_classes = scores[keep], labels[keep]
        num_kept = int(kept_queries.numel())
        require_mask_prob = panoptic.get("require_mask_prob", True)
        if num_kept:
            mask_ids = torch.empty((height, width), dtype=torch.int32, device=device)
            winner_foreground = (
                torch.empty((height, width), dtype=torch.bool, device=device) if require_mask_prob else None
            )
            mask_area = torch.zeros(num_kept, dtype=torch.int64, device=device)
            original_area = torch.zeros(num_kept, dtype=torch.int64, device=device)
            segment_area = torch.zeros(num_kept, dtype=torch.int64, device=device)

    if instance is not None:
        inst_scores, inst_labels, query_indices = topk_query_classes(
            mask_cls, instance["test_topk_per_image"], instance.get("thing_ids")
        )
        # per-query sums: a query can appear once per class among the top-k
        used_queries, instance_query = torch.unique(query_indices, return_inverse=True)
        prob_sum = torch.zeros(used_queries.numel(), dtype=torch.float64, device=device)
        count = torch.zeros(used_queries.numel(), dtype=torch.int64, device=device)
        if compact:
            packed_masks = torch.empty((query_indices.numel(), height, (width + 7) // 8), dtype=torch.uint8)
        else:
            pred_masks = torch.empty((query_indices.numel(), height, width), dtype=mask_logits.dtype, device=device)

    for start, stop in _bands(height, width, band_rows):
        logits = resizer.band(start, stop)
        prob = canonical_sigmoid(logits)
        if semantic:
            scores_band = torch.einsum("qc,qhw->chw", class_probs, prob)
            if compact:
                sem_seg_labels[start:stop] = scores_band.argmax(0)
            else:
                sem_seg[:, start:stop] = scores_band
            del scores_band
        if panoptic is not None and num_kept:
            cur_masks = prob if num_kept == num_queries else prob[kept_queries]  # (kept_queries is sorted)
            ids = (cur_scores.view(-1, 1, 1) * cur_masks).argmax(0)
            foreground = cur_masks >= 0.5
            mask_area += torch.bincount(ids.flatten(), minlength=num_kept)
            original_area += foreground.flatten(1).sum(1)
            if require_mask_prob:
                winner = torch.gather(foreground, 0, ids[None])[0]
                segment_area += torch.bincount(ids[winner], minlength=num_kept)
                winner_foreground[start:stop] = winner
            mask_ids[start:stop] = ids
            del cur_masks, foreground, ids
        if instance is not None:
            all_used = used_queries.numel() == num_queries  # (used_queries is sorted)
            binary = (logits if all_used else logits[used_queries]) > 0
            count += binary.flatten(1).sum(1)
            prob_sum += ((prob if all_used else prob[used_queries]) * binary).flatten(1).sum(1, dtype=torch.float64)
            if compact:
                packed_masks[:, start:stop] = pack_mask_rows(binary[instance_query])
            else:
                pred_masks[:, start:stop] = binary[instance_query]
            del binary
        del logits, prob

    if semantic:
        if compact:
            result["sem_seg_labels"] = sem_seg_labels
        else:
            result["sem_seg"] = sem_seg
    if panoptic is not None:
        if not num_kept:
            result["panoptic_seg"] = (torch.zeros((height, width), dtype=torch.int32, device=device), [])
        else:
            segment_area_used = segment_area if require_mask_prob else mask_area
            stats = torch.stack([mask_area, original_area, segment_area_used, cur_classes]).cpu().tolist()
            segment_of_query, segments_info = segments_from_counts(
                stats, cur_scores.cpu().tolist(), panoptic["thing_ids"], panoptic["overlap_threshold"]
            )
            lookup = torch.tensor(segment_of_query, dtype=torch.int32, device=device)
            panoptic_seg = torch.empty((height, width), dtype=torch.int32, device=device)
            for start, stop in _bands(height, width, band_rows):
                band = lookup[mask_ids[start:stop].long()]
                if require_mask_prob:
                    band = band * winner_foreground[start:stop]
                panoptic_seg[start:stop] = band
            result["panoptic_seg"] = (panoptic_seg, segments_info)
    if instance is not None:
        mask_scores = binary_mask_scores(prob_sum, count)
        instances = Instances((height, width))
        if compact:
            instances.pred_masks_packed = packed_masks.to(device)
        else:
            instances.pred_masks = pred_masks
        instances.pred_boxes = Boxes(torch.zeros(len(query_indices), 4, device=device))
        instances.scores = inst_scores * mask_scores[instance_query]
        instances.pred_classes = inst_labels
        result["instances"] = instances
    return result


def resize_scores_in_bands(scores: torch.Tensor, out_height: int, out_width: int, *, band_rows: int,
                           compact: bool = False) -> torch.Tensor:
    """``sem_seg_postprocess``'s resize of (K, h, w) scores (already cropped) to the output size,
    band by band; ``compact``: only the argmax over K, int64 (H, W)."""
    height, width = int(out_height), int(out_width)
    if height * width < MIN_BANDED_PIXELS:
        band_rows = 0
    resizer = RowBandResizer(scores, height, width)
    if compact:
        out = torch.empty((height, width), dtype=torch.int64, device=scores.device)
    else:
        out = torch.empty((scores.shape[0], height, width), dtype=scores.dtype, device=scores.device)
    for start, stop in _bands(height, width, band_rows):
        band = resizer.band(start, stop)
        if compact:
            out[start:stop] = band.argmax(0)
        else:
            out[:, start:stop] = band
    return out
