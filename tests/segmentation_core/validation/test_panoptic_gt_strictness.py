"""Evaluation is as strict as training about panoptic ground truth: a GT PNG with ids missing
from its ``segments_info`` is an error naming the file and the ids (both PQ kernels would
silently count those pixels as void), or, with ``DATALOADER.BAD_RECORD_POLICY skip``, its image
is left out of PQ and counted beside the metrics."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from detectron2.data import MetadataCatalog

from segmentation_core.validation import BadRecordError
from maskformer_d2.evaluation import PanopticQualityEvaluator

H = W = 16
SEGMENTS = [{"id": 1, "category_id": 11, "isthing": 1, "iscrowd": 0, "area": 36, "bbox": [2, 2, 6, 6]},
            {"id": 2, "category_id": 40, "isthing": 0, "iscrowd": 0, "area": 220, "bbox": [0, 0, 16, 16]}]
PRED_SEGMENTS = [{"id": 1, "category_id": 0, "isthing": True}, {"id": 2, "category_id": 1, "isthing": False}]


def _id2rgb(ids):
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], -1).astype(np.uint8)


def _ids():
    ids = np.full((H, W), 2, np.int64)
    ids[2:8, 2:8] = 1
    return ids


@pytest.fixture
def panoptic_split(tmp_path, request):
    """Two images; the GT PNG of image 2 also paints id 7, which its segments_info lacks."""
    name = f"_test_pan_strict_{request.node.name}"
    root = tmp_path / "gt"
    root.mkdir()
    for image_id in (1, 2):
        ids = _ids()
        if image_id == 2:
            ids[10:14, 10:14] = 7
        Image.fromarray(_id2rgb(ids)).save(root / f"img{image_id}.png")
    gt_json = tmp_path / "gt.json"
    gt_json.write_text(json.dumps({
        "images": [{"id": i, "file_name": f"img{i}.jpg", "height": H, "width": W} for i in (1, 2)],
        "annotations": [{"image_id": i, "file_name": f"img{i}.png", "segments_info": SEGMENTS} for i in (1, 2)],
        "categories": [{"id": 11, "name": "A", "isthing": 1}, {"id": 40, "name": "S", "isthing": 0}],
    }))
    MetadataCatalog.get(name).set(
        panoptic_root=str(root), panoptic_json=str(gt_json), thing_dataset_id_to_contiguous_id={11: 0},
        stuff_dataset_id_to_contiguous_id={11: 0, 40: 1}, label_divisor=1000,
    )
    yield name
    MetadataCatalog.remove(name)


def _evaluate(name, **kwargs):
    ev = PanopticQualityEvaluator(name, **kwargs)
    ev.reset()
    for image_id in (1, 2):
        ev.process([{"image_id": image_id, "file_name": f"img{image_id}.jpg"}],
                   [{"panoptic_seg": (torch.from_numpy(_ids()), PRED_SEGMENTS)}])
    return ev.evaluate()["panoptic_seg"]


def test_mismatching_ground_truth_is_an_error_naming_file_and_ids(panoptic_split):
    with pytest.raises(BadRecordError, match=r"(?s)1 of 2 ground-truth.*img2\.png.*ids \[7\] are in the PNG") as e:
        _evaluate(panoptic_split)
    assert e.value.reason == "panoptic_id_mismatch"
    assert "BAD_RECORD_POLICY skip" in str(e.value)


def test_skip_policy_leaves_the_image_out_and_counts_it(panoptic_split):
    res = _evaluate(panoptic_split, bad_gt_policy="skip")
    # image 1 alone, predicted perfectly: PQ 100 (image 2 would have a false positive)
    assert res["PQ"] == pytest.approx(100.0)
    assert res["skipped_images"] == 1.0


def test_clean_ground_truth_has_no_skip_count_with_fatal(panoptic_split, tmp_path):
    Image.fromarray(_id2rgb(_ids())).save(tmp_path / "gt" / "img2.png")
    res = _evaluate(panoptic_split)
    assert res["PQ"] == pytest.approx(100.0) and "skipped_images" not in res
