"""Semantic / panoptic / instance inference parity with the official meta-architectures.

The ``MaskFormer`` meta-arch runs on fixed head outputs (a stand-in head returns the stored
official ``pred_logits``/``pred_masks``), on the two inputs of the reference harness:
zero images 120x150 -> output 144x180 and 100x160 -> output 80x128, padded to 128x160.
Fixtures: tests/fixtures/m2f_inference, tests/fixtures/mf_inference (see their README.md).
"""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from maskformer_d2.modeling.meta_arch.mask_former_model import MaskFormer
from maskformer_d2.modeling.postprocessing import instance_inference

ATOL = 1e-5
M1_THINGS = [0, 1, 2, 3, 8]
M2_THINGS = [4, 5, 6, 7, 9]


class _FixedHead(torch.nn.Module):
    num_classes = 10

    def __init__(self, outputs):
        super().__init__()
        self.outputs = {"pred_logits": outputs["pred_logits"], "pred_masks": outputs["pred_masks"]}

    def forward(self, features):
        return self.outputs


class _NoBackbone(torch.nn.Module):
    size_divisibility = 0

    def forward(self, x):
        assert tuple(x.shape) == (2, 3, 128, 160)  # padded to size_divisibility 32
        return {}


def _metadata(things):
    return SimpleNamespace(thing_dataset_id_to_contiguous_id={c + 1: c for c in things})


def _model(outputs, *, semantic_on=True, panoptic_on=False, instance_on=False, before=True,
           obj=0.8, overlap=0.8, things=M1_THINGS, m2f_rules=True):
    return MaskFormer(
        backbone=_NoBackbone(), sem_seg_head=_FixedHead(outputs), criterion=torch.nn.Identity(),
        num_queries=16, object_mask_threshold=obj, overlap_threshold=overlap, metadata=_metadata(things),
        size_divisibility=32, sem_seg_postprocess_before_inference=before, pixel_mean=[0.0] * 3,
        pixel_std=[1.0] * 3, semantic_on=semantic_on, panoptic_on=panoptic_on, instance_on=instance_on,
        test_topk_per_image=100, panoptic_requires_mask_prob=m2f_rules,
    ).eval()


@pytest.fixture(scope="module")
def m2f(request):
    root = request.config.rootpath / "tests" / "fixtures"
    load = lambda folder, name: torch.load(root / folder / name, weights_only=True)  # noqa: E731
    sizes = json.loads((root / "m2f_inference" / "sizes.json").read_text())
    packed = load("m2f_inference", "query_binary_masks_packed.pt")
    query_masks = [
        torch.from_numpy(np.unpackbits(p.numpy())[: int(np.prod(s))].reshape(s).astype(bool))
        for p, s in zip(packed["packed"], packed["shapes"])
    ]
    return SimpleNamespace(
        outputs=load("m2f_loss", "outputs.pt"),
        mf_outputs=load("mf_loss", "outputs.pt"),
        sizes=sizes,
        panoptic=load("m2f_inference", "panoptic_config_results.pt"),
        low=load("m2f_inference", "panoptic_low_threshold_results.pt"),
        semantic=load("m2f_inference", "semantic_config_results.pt"),
        instance=load("m2f_inference", "instance_config_results.pt"),
        query_masks=query_masks,
        mf=load("mf_inference", "results.pt"),
    )


def _run(model, sizes):
    batch = [
        {"image": torch.zeros(3, h, w), "height": oh, "width": ow}
        for (h, w), (oh, ow) in zip(sizes["image_sizes"], sizes["output_sizes"])
    ]
    with torch.no_grad():
        return model(batch)


def _check_panoptic(result, ref):
    panoptic_seg, segments_info = result["panoptic_seg"]
    assert panoptic_seg.dtype == torch.int32
    assert torch.equal(panoptic_seg, ref["panoptic_seg"].to(torch.int32))  # stored as uint8, see README
    # ours adds each segment's query score (detectron2's Panoptic FPN convention); the rest
    # is the official list
    assert [{k: v for k, v in s.items() if k != "score"} for s in segments_info] == ref["segments_info"]
    assert all(0.0 < s["score"] <= 1.0 for s in segments_info)


def _check_instances(inst, ref, query_masks):
    """Order-insensitive: the official topk(sorted=False) order is a torch-build detail."""
    assert len(inst) == ref["num_instances"]
    assert list(inst.image_size) == ref["image_size"]
    ref_queries = ref["mask_query_index"]
    ref_key = [(int(c), float(s)) for c, s in zip(ref["pred_classes"], ref["scores"])]
    got_key = [(int(c), float(s)) for c, s in zip(inst.pred_classes, inst.scores)]
    ref_order = sorted(range(len(ref_key)), key=ref_key.__getitem__)
    got_order = sorted(range(len(got_key)), key=got_key.__getitem__)
    ref_order, got_order = torch.tensor(ref_order, dtype=torch.long), torch.tensor(got_order, dtype=torch.long)
    assert torch.equal(inst.pred_classes[got_order], ref["pred_classes"][ref_order])
    max_diff = (inst.scores[got_order] - ref["scores"][ref_order]).abs().max().item()
    assert max_diff <= ATOL
    assert torch.equal(inst.pred_masks[got_order], query_masks[ref_queries[ref_order]].float())
    assert inst.pred_masks.dtype == torch.float32
    assert torch.equal(inst.pred_boxes.tensor, torch.zeros(len(inst), 4))
    return max_diff


def test_m2f_panoptic_config(m2f):
    """Variant A: semantic + panoptic + instance, official 0.8/0.8 (empty panoptic output)."""
    results = _run(_model(m2f.outputs, panoptic_on=True, instance_on=True), m2f.sizes)
    for result, ref, qmasks in zip(results, m2f.panoptic["per_image"], m2f.query_masks):
        assert result["sem_seg"].shape == ref["sem_seg"].shape
        assert (result["sem_seg"] - ref["sem_seg"]).abs().max().item() <= ATOL
        _check_panoptic(result, ref)
        _check_instances(result["instances"], ref["instances"], qmasks)
        assert set(result["instances"].pred_classes.tolist()) <= set(M1_THINGS)


@pytest.mark.parametrize("variant", ["B1_M1_obj0.15_ov0.5", "B2_M2_obj0.15_ov0.5", "B3_M2_obj0.12_ov0.0"])
def test_m2f_panoptic_low_thresholds(m2f, variant):
    ref = m2f.low[variant]
    settings = ref["settings"]
    things = ref["metadata"]["thing_contiguous_ids"]
    model = _model(m2f.outputs, panoptic_on=True, instance_on=True, things=things,
                   obj=settings["object_mask_threshold"], overlap=settings["overlap_threshold"])
    results = _run(model, m2f.sizes)
    for result, ref_image in zip(results, ref["per_image"]):
        _check_panoptic(result, ref_image)
    assert any(r["panoptic_seg"][1] for r in results)  # non-trivial output


def test_m2f_semantic_config(m2f):
    """Variant C: semantic only, scores cropped and resized after inference."""
    results = _run(_model(m2f.outputs, before=False), m2f.sizes)
    for result, ref in zip(results, m2f.semantic["per_image"]):
        assert set(result) == {"sem_seg"}
        assert result["sem_seg"].shape == ref["sem_seg"].shape
        assert (result["sem_seg"] - ref["sem_seg"]).abs().max().item() <= ATOL


def test_m2f_instance_config(m2f):
    """Variant D: instance only, all classes kept, 100 per image."""
    results = _run(_model(m2f.outputs, semantic_on=False, instance_on=True), m2f.sizes)
    for result, ref, qmasks in zip(results, m2f.instance["per_image"], m2f.query_masks):
        assert set(result) == {"instances"}
        _check_instances(result["instances"], ref["instances"], qmasks)


@pytest.mark.parametrize("source", ["mf_head_outputs", "m2f_head_outputs"])
def test_mf_panoptic(m2f, source):
    outputs = m2f.mf_outputs if source == "mf_head_outputs" else m2f.outputs
    variants = m2f.mf["panoptic"][source]
    assert len(variants) == 4
    for name, ref in variants.items():
        things = ref["metadata"]["thing_contiguous_ids"]
        assert things == (M1_THINGS if "_M1_" in name else M2_THINGS)
        model = _model(outputs, panoptic_on=True, things=things, m2f_rules=False,
                       obj=ref["object_mask_threshold"], overlap=ref["overlap_threshold"])
        results = _run(model, m2f.sizes)
        for result, ref_image in zip(results, ref["per_image"]):
            _check_panoptic(result, ref_image)
        if source == "m2f_head_outputs":
            # MaskFormer's semantic output is the same algorithm as Mask2Former's.
            for result, ref_image in zip(results, m2f.panoptic["per_image"]):
                assert (result["sem_seg"] - ref_image["sem_seg"]).abs().max().item() <= ATOL


def test_mf_rule_differs_from_m2f_rule(m2f):
    """On identical inputs the MaskFormer rule leaves fewer void pixels (README §9)."""
    kwargs = dict(panoptic_on=True, things=M2_THINGS, obj=0.12, overlap=0.0)
    m2f_res = _run(_model(m2f.outputs, **kwargs), m2f.sizes)
    mf_res = _run(_model(m2f.outputs, m2f_rules=False, **kwargs), m2f.sizes)
    void = lambda rs: sum(int((r["panoptic_seg"][0] == 0).sum()) for r in rs)  # noqa: E731
    assert void(mf_res) < void(m2f_res)


def test_instance_topk_too_large_raises():
    with pytest.raises(ValueError, match="DETECTIONS_PER_IMAGE"):
        instance_inference(torch.randn(4, 3), torch.randn(4, 8, 8), test_topk_per_image=9)


def test_panoptic_without_metadata_raises(m2f):
    model = _model(m2f.outputs, panoptic_on=True)
    model.metadata = SimpleNamespace()
    with pytest.raises(ValueError, match="thing_dataset_id_to_contiguous_id"):
        _run(model, m2f.sizes)


def test_panoptic_segment_scores_are_query_class_probabilities():
    """A thing segment's score is its query's class probability; two stuff queries of one class
    merge into one segment scored by the higher of the two."""
    from maskformer_d2.modeling.postprocessing import panoptic_inference

    # 3 classes + no-object; query 0: thing class 0, queries 1 and 2: stuff class 2
    mask_cls = torch.tensor([[4.0, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0], [0.0, 0.0, 2.0, 0.0]])
    big = 20.0
    mask_pred = torch.full((3, 4, 6), -big)
    mask_pred[0, :, :2] = big  # thing on columns 0-1
    mask_pred[1, :, 2:4] = big  # stuff query 1 on columns 2-3
    mask_pred[2, :, 4:] = big  # stuff query 2 on columns 4-5
    probs = mask_cls.softmax(-1).max(-1).values
    panoptic_seg, segments_info = panoptic_inference(
        mask_cls, mask_pred, object_mask_threshold=0.1, overlap_threshold=0.8, thing_ids=[0]
    )
    assert [(s["category_id"], s["isthing"]) for s in segments_info] == [(0, True), (2, False)]
    assert segments_info[0]["score"] == pytest.approx(float(probs[0]))
    assert segments_info[1]["score"] == pytest.approx(float(max(probs[1], probs[2])))
    assert float(probs[1]) != pytest.approx(float(probs[2]))
    assert set(panoptic_seg[:, 2:].unique().tolist()) == {2}
