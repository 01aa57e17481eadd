"""Post-processing in bands of output rows equals the whole-image post-processing bit for bit.

Synthetic query outputs (smooth mask logits at network resolution, class logits with confident
queries), resized to a 1024x1536 output that no band size divides; compared with
``torch.equal`` / identical ``segments_info`` against ``sem_seg_postprocess`` +
``semantic_inference`` / ``panoptic_inference`` / ``instance_inference`` (which keep the
(Q, H, W) masks at the output resolution), and through the ``MaskFormer`` meta-architecture
with ``POSTPROCESS_BAND_MB`` small vs 0.
"""
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from maskformer_d2.modeling.banded_postprocessing import (
    MIN_BANDED_PIXELS,
    RowBandResizer,
    band_rows_for_budget,
    bilinear_resize,
    canonical_sigmoid,
    postprocess_in_bands,
    resize_scores_in_bands,
    unpack_instance_masks,
)
from maskformer_d2.modeling.meta_arch.mask_former_model import MaskFormer
from maskformer_d2.modeling.postprocessing import (
    instance_inference,
    panoptic_inference,
    sem_seg_postprocess,
    semantic_inference,
)

NUM_QUERIES, NUM_CLASSES = 20, 8
THINGS = [0, 1, 2, 3]
OUT_H, OUT_W = 1024, 1536
PANOPTIC = dict(object_mask_threshold=0.3, overlap_threshold=0.5, thing_ids=THINGS)


def _query_outputs(seed=0, size=(72, 104)):
    """(Q, K+1) class logits (most queries confident about one class) and smooth (Q, h, w)
    mask logits, as a head at network resolution gives them."""
    g = torch.Generator().manual_seed(seed)
    mask_cls = torch.randn(NUM_QUERIES, NUM_CLASSES + 1, generator=g)
    best = torch.randint(0, NUM_CLASSES, (NUM_QUERIES,), generator=g)
    mask_cls[torch.arange(NUM_QUERIES), best] += 4.0
    # each coarse cell belongs to one query (a partition, as trained masks are), plus noise
    cells = torch.randint(0, NUM_QUERIES, (size[0] // 8, size[1] // 8), generator=g)
    coarse = (F.one_hot(cells, NUM_QUERIES).permute(2, 0, 1)[None].float() - 0.5) * 12
    coarse += torch.randn(coarse.shape, generator=g)
    mask_logits = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)[0]
    mask_logits += torch.randn(mask_logits.shape, generator=g) * 0.5
    return mask_cls, mask_logits


def _whole_image(mask_cls, mask_logits, out_h, out_w, require_mask_prob=True):
    full = sem_seg_postprocess(mask_logits, mask_logits.shape[-2:], out_h, out_w)  # the whole-image path
    return {
        "sem_seg": semantic_inference(mask_cls, full),
        "panoptic_seg": panoptic_inference(mask_cls, full, require_mask_prob=require_mask_prob, **PANOPTIC),
        "instances": instance_inference(mask_cls, full, test_topk_per_image=NUM_QUERIES, thing_ids=THINGS),
    }


def _banded(mask_cls, mask_logits, out_h, out_w, rows, require_mask_prob=True, compact=False):
    return postprocess_in_bands(
        mask_cls, mask_logits, out_h, out_w, band_rows=rows, semantic=True,
        panoptic=dict(PANOPTIC, require_mask_prob=require_mask_prob),
        instance=dict(test_topk_per_image=NUM_QUERIES, thing_ids=THINGS), compact=compact,
    )


def _assert_identical(got, ref):
    assert got["sem_seg"].dtype == ref["sem_seg"].dtype and torch.equal(got["sem_seg"], ref["sem_seg"])
    (got_ids, got_segments), (ref_ids, ref_segments) = got["panoptic_seg"], ref["panoptic_seg"]
    assert got_ids.dtype == ref_ids.dtype == torch.int32 and torch.equal(got_ids, ref_ids)
    assert got_segments == ref_segments
    gi, ri = got["instances"], ref["instances"]
    assert gi.image_size == ri.image_size
    assert gi.pred_masks.dtype == ri.pred_masks.dtype == torch.float32
    for field in ("pred_masks", "scores", "pred_classes"):
        assert torch.equal(getattr(gi, field), getattr(ri, field)), field
    assert torch.equal(gi.pred_boxes.tensor, ri.pred_boxes.tensor)


@pytest.fixture(scope="module")
def synthetic():
    mask_cls, mask_logits = _query_outputs()
    ref = _whole_image(mask_cls, mask_logits, OUT_H, OUT_W)
    # the comparison means something only with several segments and instances
    segments = ref["panoptic_seg"][1]
    assert len(segments) >= 3 and any(s["isthing"] for s in segments) and any(not s["isthing"] for s in segments)
    assert len(ref["instances"]) >= 5 and bool((ref["instances"].scores > 0).all())
    return SimpleNamespace(mask_cls=mask_cls, mask_logits=mask_logits, ref=ref)


@pytest.mark.parametrize("rows", [37, 1023, 5000])
def test_bands_equal_whole_image(synthetic, rows):
    _assert_identical(_banded(synthetic.mask_cls, synthetic.mask_logits, OUT_H, OUT_W, rows), synthetic.ref)


def test_single_row_bands_equal_whole_image():
    """One output row per band (small output: one-row bands of 1024x1536 take half a minute)."""
    mask_cls, mask_logits = _query_outputs(seed=1, size=(40, 56))
    out_h, out_w = 67, 1031
    assert out_h * out_w >= MIN_BANDED_PIXELS
    ref = _whole_image(mask_cls, mask_logits, out_h, out_w)
    _assert_identical(_banded(mask_cls, mask_logits, out_h, out_w, 1), ref)


def test_maskformer_panoptic_rule_in_bands(synthetic):
    """MaskFormer's rule (argmax only, no sigmoid >= 0.5 requirement)."""
    ref = panoptic_inference(
        synthetic.mask_cls,
        F.interpolate(synthetic.mask_logits[None], size=(OUT_H, OUT_W), mode="bilinear", align_corners=False)[0],
        require_mask_prob=False, **PANOPTIC,
    )
    got = _banded(synthetic.mask_cls, synthetic.mask_logits, OUT_H, OUT_W, 300, require_mask_prob=False)
    assert torch.equal(got["panoptic_seg"][0], ref[0]) and got["panoptic_seg"][1] == ref[1]
    assert not torch.equal(ref[0], synthetic.ref["panoptic_seg"][0])  # the two rules differ here


def test_compact_outputs_are_the_dense_ones_compressed(synthetic):
    got = _banded(synthetic.mask_cls, synthetic.mask_logits, OUT_H, OUT_W, 200, compact=True)
    assert "sem_seg" not in got and got["sem_seg_labels"].dtype == torch.int64
    assert torch.equal(got["sem_seg_labels"], synthetic.ref["sem_seg"].argmax(0))
    inst, ref = got["instances"], synthetic.ref["instances"]
    assert not inst.has("pred_masks")
    assert inst.pred_masks_packed.dtype == torch.uint8
    assert tuple(inst.pred_masks_packed.shape) == (len(ref), OUT_H, OUT_W // 8)
    assert torch.equal(unpack_instance_masks(inst), ref.pred_masks.bool())
    assert torch.equal(inst.scores, ref.scores) and torch.equal(inst.pred_classes, ref.pred_classes)
    assert torch.equal(got["panoptic_seg"][0], synthetic.ref["panoptic_seg"][0])
    # a width that is not a multiple of 8, and indexing the instances first
    mask_cls, mask_logits = _query_outputs(seed=2, size=(40, 56))
    small = _banded(mask_cls, mask_logits, 100, 1003, 7, compact=True)["instances"][[0, 2]]
    full = bilinear_resize(mask_logits, 100, 1003)
    ref_small = instance_inference(mask_cls, full, test_topk_per_image=NUM_QUERIES, thing_ids=THINGS)[[0, 2]]
    assert torch.equal(unpack_instance_masks(small), ref_small.pred_masks.bool())


@pytest.mark.parametrize("size,out", [((72, 104), (400, 1536)), ((200, 150), (257, 300)), ((13, 17), (300, 301)),
                                      ((300, 400), (300, 999)), ((9, 300), (257, 256))])
def test_row_bands_equal_the_whole_resize_on_any_thread_count(size, out):
    """Up- and downsampling, odd sizes, unchanged height: every band split gives the whole
    image's values, with 1 or 2 threads alike, and those are F.interpolate's up to an ulp or two."""
    g = torch.Generator().manual_seed(3)
    source = torch.randn(3, *size, generator=g) * 8
    full = bilinear_resize(source, *out)
    torch.testing.assert_close(full, F.interpolate(source[None], size=out, mode="bilinear", align_corners=False)[0],
                               rtol=1e-6, atol=1e-5)
    resizer = RowBandResizer(source, *out)
    threads = torch.get_num_threads()
    try:
        for num_threads in (1, 2):
            torch.set_num_threads(num_threads)
            assert torch.equal(bilinear_resize(source, *out), full), num_threads
            for rows in (1, 7, 64):
                band = torch.cat([resizer.band(a, min(out[0], a + rows)) for a in range(0, out[0], rows)], dim=1)
                assert torch.equal(band, full), (num_threads, rows)
    finally:
        torch.set_num_threads(threads)


def test_canonical_sigmoid_does_not_depend_on_position_or_threads():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(20, 61, 1531, generator=g) * 4
    whole = canonical_sigmoid(x)
    # plain sigmoid up to the last ulp
    assert torch.allclose(whole, x.sigmoid(), rtol=0, atol=1e-7)
    for rows in (1, 5, 60):
        for a in range(0, 61, rows):
            assert torch.equal(canonical_sigmoid(x[:, a:a + rows]), whole[:, a:a + rows])
    flat = x.flatten()
    for start, stop in [(0, 17), (3, 100003), (12345, 12345 + 65 * 64 + 1)]:
        assert torch.equal(canonical_sigmoid(flat[start:stop]), whole.flatten()[start:stop])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(canonical_sigmoid(x), whole)
    finally:
        torch.set_num_threads(threads)


def test_small_outputs_are_one_band():
    """Below MIN_BANDED_PIXELS any band size means the whole image (the kernel's small-plane path)."""
    mask_cls, mask_logits = _query_outputs(seed=5, size=(40, 56))
    _assert_identical(_banded(mask_cls, mask_logits, 60, 64, 1), _whole_image(mask_cls, mask_logits, 60, 64))


def test_semantic_scores_resized_in_bands():
    """SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE False: (K, h, w) scores resized band by band."""
    mask_cls, mask_logits = _query_outputs(seed=6)
    scores = semantic_inference(mask_cls, mask_logits)
    ref = sem_seg_postprocess(scores, (70, 100), 700, 1000)
    got = resize_scores_in_bands(scores[:, :70, :100], 700, 1000, band_rows=33)
    assert torch.equal(got, ref)
    labels = resize_scores_in_bands(scores[:, :70, :100], 700, 1000, band_rows=33, compact=True)
    assert torch.equal(labels, ref.argmax(0))


def test_band_rows_for_budget():
    assert band_rows_for_budget(0, 100, 8000) == 0
    assert band_rows_for_budget(64 * 2**20, 100, 8000) == 20
    assert band_rows_for_budget(1, 100, 8000) == 1


# ------------------------------------------------------------------------- the meta-architecture
class _FixedHead(torch.nn.Module):
    num_classes = NUM_CLASSES

    def __init__(self, mask_cls, mask_logits):
        super().__init__()
        self.outputs = {"pred_logits": mask_cls[None], "pred_masks": mask_logits[None]}

    def forward(self, features):
        return self.outputs


class _NoBackbone(torch.nn.Module):
    size_divisibility = 0

    def forward(self, x):
        return {}


def _model(outputs, band_mb, *, semantic_only=False, compact=False):
    return MaskFormer(
        backbone=_NoBackbone(), sem_seg_head=_FixedHead(*outputs), criterion=torch.nn.Identity(),
        num_queries=NUM_QUERIES, object_mask_threshold=PANOPTIC["object_mask_threshold"],
        overlap_threshold=PANOPTIC["overlap_threshold"],
        metadata=SimpleNamespace(thing_dataset_id_to_contiguous_id={c + 1: c for c in THINGS}),
        size_divisibility=32, sem_seg_postprocess_before_inference=not semantic_only, pixel_mean=[0.0] * 3,
        pixel_std=[1.0] * 3, semantic_on=True, panoptic_on=not semantic_only, instance_on=not semantic_only,
        test_topk_per_image=NUM_QUERIES, postprocess_band_mb=band_mb, compact_outputs=compact,
    ).eval()


@pytest.mark.parametrize("semantic_only", [False, True])
def test_meta_architecture_bands_equal_whole_image(semantic_only):
    """Input 100x150 padded to 128x160 (mask logits at 1/4 of that), output 600x901: the
    padded-size resize, the crop and the final resize in bands, against POSTPROCESS_BAND_MB 0."""
    outputs = _query_outputs(seed=7, size=(32, 40))
    batch = [{"image": torch.zeros(3, 100, 150), "height": 600, "width": 901}]
    with torch.no_grad():
        ref = _model(outputs, 0, semantic_only=semantic_only)(batch)[0]
        # 1 MiB: bands of 1 MiB / (20 queries * 901 * 4 bytes) = 14 rows
        got = _model(outputs, 1, semantic_only=semantic_only)(batch)[0]
    assert sorted(got) == sorted(ref)
    assert torch.equal(got["sem_seg"], ref["sem_seg"])
    if not semantic_only:
        assert len(ref["panoptic_seg"][1]) >= 2
        _assert_identical(got, ref)


def test_meta_architecture_switches_are_checked():
    outputs = _query_outputs(size=(32, 40))
    with pytest.raises(ValueError, match="COMPACT_OUTPUTS needs banded post-processing"):
        _model(outputs, 0, compact=True)
    with pytest.raises(ValueError, match="POSTPROCESS_BAND_MB must be >= 0"):
        _model(outputs, -1)


def test_config_defaults():
    from segmentation_core.config import build_cfg, get_config_file

    cfg = build_cfg(get_config_file("shapes/mask2former_R18_panoptic.yaml"))
    assert cfg.MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB == 64.0
    assert cfg.MODEL.MASK_FORMER.TEST.COMPACT_OUTPUTS is False


def test_compact_outputs_are_refused_for_evaluation():
    from segmentation_core.config import build_cfg, get_config_file

    cfg = build_cfg(get_config_file("shapes/mask2former_R18_panoptic.yaml"),
                    ["MODEL.MASK_FORMER.TEST.COMPACT_OUTPUTS", "True"])
    with pytest.raises(ValueError, match="evaluate with COMPACT_OUTPUTS False"):
        MaskFormer.eval_tasks(cfg)


def test_every_query_kept_and_used():
    """All queries pass the panoptic threshold and appear among the instances (no gathers)."""
    mask_cls, mask_logits = _query_outputs(seed=8, size=(40, 56))
    out_h, out_w = 300, 401
    full = F.interpolate(mask_logits[None], size=(out_h, out_w), mode="bilinear", align_corners=False)[0]
    panoptic = dict(PANOPTIC, object_mask_threshold=0.0)
    topk = NUM_QUERIES * NUM_CLASSES
    ref_pan = panoptic_inference(mask_cls, full, **panoptic)
    ref_inst = instance_inference(mask_cls, full, test_topk_per_image=topk)
    got = postprocess_in_bands(mask_cls, mask_logits, out_h, out_w, band_rows=37, panoptic=panoptic,
                               instance=dict(test_topk_per_image=topk))
    assert int(ref_inst.pred_classes.numel()) == topk
    assert bool(F.softmax(mask_cls, dim=-1).argmax(-1).ne(NUM_CLASSES).all())  # every query kept
    assert torch.equal(got["panoptic_seg"][0], ref_pan[0]) and got["panoptic_seg"][1] == ref_pan[1]
    for field in ("pred_masks", "scores", "pred_classes"):
        assert torch.equal(getattr(got["instances"], field), getattr(ref_inst, field)), field
