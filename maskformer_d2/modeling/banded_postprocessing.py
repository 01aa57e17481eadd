"""Semantic / panoptic / instance post-processing in bands of output rows (bounded memory).

The whole-image functions of ``postprocessing`` need the (Q, H, W) mask logits at the output
resolution: 100 queries at 8000x8000 are 25.6 GB of float32, before ``sigmoid`` doubles it.
Here the mask logits stay at network resolution and are resized band by band (``rows`` output
rows at a time): every per-pixel quantity (probabilities, semantic scores, the panoptic argmax,
binary masks) is computed for one band and written out, every per-query quantity (panoptic
areas, instance mask sums) is accumulated over the bands. Peak memory is the outputs plus a few
(Q, rows, W) tensors.

The results are bit-for-bit those of the whole-image functions:

* ``RowBandResizer.band(a, b)`` equals ``F.interpolate(x[None], (H, W), mode="bilinear",
  align_corners=False)[0, :, a:b]``: the kernel first resizes the width of each source row, then
  mixes two rows per output row as ``fma(row0, w0, row1 * w1)`` with source positions
  ``fma(scale, i + 0.5, -0.5)``. The width step is done by the kernel itself (on the source rows
  the band needs), the row step is reproduced in float64 with an exact fused multiply-add. That
  the kernel of this device computes exactly this is checked once per device and dtype
  (``check_band_resize_is_exact``): a kernel that does not is an error naming the switch, never a
  silently different result.
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
import functools
import logging
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from detectron2.structures import Boxes, Instances

__all__ = [
    "canonical_sigmoid",
    "RowBandResizer",
    "check_band_resize_is_exact",
    "band_rows_for_budget",
    "postprocess_in_bands",
    "resize_scores_in_bands",
    "unpack_instance_masks",
    "BandResizeNotExactError",
]

logger = logging.getLogger(__name__)

# Elements per vectorized step of ATen's CPU loops (2 vectors of 8 (AVX2) or 16 (AVX-512)
# floats), rounded up; and the grain below which ATen does not split an elementwise op.
_VECTOR_BLOCK = 64
_ATEN_GRAIN_SIZE = 32768
# Smaller outputs are never split into bands: the CPU kernel mixes rows differently for output
# planes below 4096 pixels (measured), and one band of such an output is small anyway.
MIN_BANDED_PIXELS = 65536


class BandResizeNotExactError(RuntimeError):
    """The interpolation kernel of this device cannot be reproduced band by band."""


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


def _fma_f32(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """float32 ``a * b + c`` rounded once (a fused multiply-add), for float32 tensors.

    ``a * b`` is exact in float64 and ``+ c`` rounds to 53 bits; rounding that to 24 bits gives
    the correctly rounded result except when the float64 sum lies exactly halfway between two
    float32 values, where the sign of the float64 rounding error (TwoSum) decides."""
    a, b, c = torch.broadcast_tensors(a, b, c)
    total = a.double()
    total.mul_(b.double())
    total.add_(c.double())
    out = total.float()
    # halfway between two normal float32: the 29 low mantissa bits are 1000...0; tiny values
    # (float32 subnormals) are checked in general
    candidates = (total.view(torch.int64) & 0x1FFFFFFF) == 0x10000000
    candidates |= out.abs() < 2.0**-125
    if bool(candidates.any()):
        product = a[candidates].double() * b[candidates].double()
        addend = c[candidates].double()
        s = total[candidates]
        bb = s - product
        error = (product - (s - bb)) + (addend - bb)  # exact: product + addend = s + error
        f = out[candidates]
        fd = f.double()
        up = s > fd
        infinity = torch.full_like(f, float("inf"))
        toward = torch.nextafter(f, torch.where(up, infinity, -infinity))
        halfway = (fd + toward.double()) * 0.5 == s
        flip = halfway & (error != 0) & ((error > 0) == up)
        out[candidates] = torch.where(flip, toward, f)
    return out


def _fma_addcmul(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """``torch.addcmul(c, a, b)``: a fused multiply-add where ATen's CPU kernels were compiled
    with FMA contraction (as the interpolation kernel), else two roundings; used only where
    ``check_band_resize_is_exact`` found it reproduces the kernel. 20x faster than ``_fma_f32``."""
    return torch.addcmul(c, a, b)


# How the row step of a band is computed, fastest first; the first one that reproduces the
# device's kernel on the probe sizes is used.
_ROW_MIXERS = {"addcmul": _fma_addcmul, "exact_fma": _fma_f32}


def _linear_taps(in_size: int, out_size: int, device) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source rows and weights of bilinear resizing ``in_size -> out_size``, align_corners=False.

    Returns (index0, index1, weight0, weight1), each (out_size,); float32 weights computed as
    the CPU kernel does: position ``fma(in/out, i + 0.5, -0.5)`` clamped at 0."""
    scale = torch.tensor(in_size, dtype=torch.float32) / torch.tensor(out_size, dtype=torch.float32)
    centers = torch.arange(out_size, dtype=torch.float32) + 0.5
    position = (centers.double() * scale.double() - 0.5).float().clamp(min=0)
    index0 = position.long()
    index1 = torch.where(index0 < in_size - 1, index0 + 1, index0)
    weight1 = (position - index0.float()).clamp(0, 1)
    weight0 = 1 - weight1
    return tuple(t.to(device) for t in (index0, index1, weight0, weight1))


class RowBandResizer:
    """Rows ``[start, stop)`` of ``F.interpolate(source[None], (out_h, out_w), mode="bilinear",
    align_corners=False)[0]``, bit for bit, computing only those rows.

    Args:
        source: (C, h, w) float32.
        out_h, out_w: the full output size.
    """

    def __init__(self, source: torch.Tensor, out_h: int, out_w: int, row_mixer: str = "exact_fma"):
        if row_mixer not in _ROW_MIXERS:
            raise ValueError(f"row_mixer must be one of {sorted(_ROW_MIXERS)}; got {row_mixer!r}")
        self.mix = _ROW_MIXERS[row_mixer]
        if source.dim() != 3:
            raise ValueError(f"RowBandResizer needs a (C, h, w) source; got shape {tuple(source.shape)}")
        self.source = source
        self.out_h, self.out_w = int(out_h), int(out_w)
        self.identity = tuple(source.shape[-2:]) == (self.out_h, self.out_w)
        if not self.identity:
            taps = _linear_taps(source.shape[1], self.out_h, source.device)
            self.index0, self.index1, self.weight0, self.weight1 = taps

    def band(self, start: int, stop: int) -> torch.Tensor:
        """(C, stop - start, out_w) float32."""
        if self.identity:
            return self.source[:, start:stop]
        index0, index1 = self.index0[start:stop], self.index1[start:stop]
        first, last = int(index0[0]), int(index1[-1])
        rows = self.source[:, first:last + 1].contiguous()
        # width step by the kernel itself (the height is unchanged: an exact copy of each row)
        widened = F.interpolate(rows[None], size=(rows.shape[1], self.out_w), mode="bilinear", align_corners=False)[0]
        weight0 = self.weight0[start:stop].view(1, -1, 1)
        weight1 = self.weight1[start:stop].view(1, -1, 1)
        return self.mix(widened[:, index0 - first], weight0, widened[:, index1 - first] * weight1)


def _reproduces_kernel(device_type: str, dtype: torch.dtype, row_mixer: str) -> bool:
    generator = torch.Generator().manual_seed(0)
    for h, w, out_h, out_w in [(40, 30, 333, 512), (200, 150, 257, 300), (13, 17, 300, 301), (9, 300, 257, 256)]:
        source = (torch.randn(3, h, w, generator=generator) * 8).to(device=device_type, dtype=dtype)
        full = F.interpolate(source[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
        resizer = RowBandResizer(source, out_h, out_w, row_mixer)
        for rows in (1, 3, 16):
            for start in range(0, out_h, rows):
                stop = min(out_h, start + rows)
                if not torch.equal(resizer.band(start, stop), full[:, start:stop]):
                    return False
    return True


@functools.lru_cache(maxsize=None)
def _row_mixer_for(device_type: str, dtype: torch.dtype) -> Optional[str]:
    for name in _ROW_MIXERS:
        if _reproduces_kernel(device_type, dtype, name):
            logger.info("banded post-processing on %s/%s: row step by %s (reproduces F.interpolate bit for bit)",
                        device_type, dtype, name)
            return name
    return None


def check_band_resize_is_exact(device: torch.device, dtype: torch.dtype) -> str:
    """The ``RowBandResizer`` row mixer that reproduces this device's bilinear kernel bit for
    bit (checked once per device type and dtype, on small tensors); ``BandResizeNotExactError``
    when none does."""
    device = torch.device(device)
    name = _row_mixer_for(device.type, dtype) if dtype == torch.float32 else None
    if name is None:
        raise BandResizeNotExactError(
            f"banded post-processing cannot reproduce F.interpolate bit for bit on {device.type} with {dtype}: "
            "set MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB 0 to post-process the whole image at once "
            "(memory grows with the output size)"
        )
    return name


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


def _segments_from_counts(stats: List[List[int]], query_scores: List[float], thing_ids: Iterable[int],
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
    row_mixer = check_band_resize_is_exact(device, mask_logits.dtype) if 0 < band_rows < height else "exact_fma"
    resizer = RowBandResizer(mask_logits, height, width, row_mixer)
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
        if band_rows <= 0 or stop - start == height:
            logits = F.interpolate(mask_logits[None], size=(height, width), mode="bilinear", align_corners=False)[0] \
                if not resizer.identity else mask_logits
        else:
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
            segment_of_query, segments_info = _segments_from_counts(
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
    row_mixer = check_band_resize_is_exact(scores.device, scores.dtype) if 0 < band_rows < height else "exact_fma"
    resizer = RowBandResizer(scores, height, width, row_mixer)
    if compact:
        out = torch.empty((height, width), dtype=torch.int64, device=scores.device)
    else:
        out = torch.empty((scores.shape[0], height, width), dtype=scores.dtype, device=scores.device)
    for start, stop in _bands(height, width, band_rows):
        if band_rows <= 0 or stop - start == height:
            band = scores if resizer.identity else F.interpolate(
                scores[None], size=(height, width), mode="bilinear", align_corners=False)[0]
        else:
            band = resizer.band(start, stop)
        if compact:
            out[start:stop] = band.argmax(0)
        else:
            out[:, start:stop] = band
    return out
