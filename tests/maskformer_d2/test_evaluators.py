"""Evaluators against independent references.

* ``InstanceSegEvaluator`` (fed model-style ``Instances``) vs pycocotools ``COCOeval`` run
  directly on the same masks with dataset category ids; the dataset ids are non-contiguous,
  so a wrong contiguous -> dataset id remapping changes every number.
* ``PanopticQualityEvaluator`` PQ/SQ/RQ (all/things/stuff) vs values computed by hand.
* detectron2 ``SemSegEvaluator`` (mIoU, fwIoU, mACC, pACC) vs values computed by hand.
"""
import contextlib
import io
import math

import numpy as np
import pycocotools.mask as mask_util
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.evaluation import SemSegEvaluator
from detectron2.structures import Boxes, Instances

from maskformer_d2.evaluation import InstanceSegEvaluator, PanopticQualityEvaluator

from tests.helpers.dataset_files import id2rgb, save_png, write_json


@pytest.fixture
def dataset_name(request):
    """A unique catalog name, removed again after the test."""
    name = f"_test_evaluators_{request.node.name}"
    yield name
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    if name in MetadataCatalog.list():
        MetadataCatalog.remove(name)


# ----------------------------------------------------------------------------- instance AP

# dataset ids 3, 7, 12 -> contiguous 0, 1, 2
INST_DATASET_IDS = {3: 0, 7: 1, 12: 2}
INST_H = INST_W = 64


def _box_mask(x0, y0, x1, y1):
    m = np.zeros((INST_H, INST_W), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def _instance_case():
    """Ground truth (dataset ids, incl. medium-size objects) and predictions (contiguous ids)
    with localisation errors, a wrong class, a duplicate and a miss."""
    gts = {  # image_id -> [(dataset category id, mask)]
        1: [(3, _box_mask(2, 2, 40, 40)), (7, _box_mask(44, 5, 60, 30)), (12, _box_mask(5, 45, 25, 60))],
        2: [(12, _box_mask(10, 10, 50, 50)), (3, _box_mask(52, 52, 63, 63))],
        3: [(7, _box_mask(0, 0, 20, 20)), (7, _box_mask(30, 30, 62, 62))],
    }
    preds = {  # image_id -> [(contiguous class, score, mask)]
        1: [(0, 0.95, _box_mask(4, 2, 40, 42)), (1, 0.80, _box_mask(44, 8, 60, 30)),
            (2, 0.30, _box_mask(5, 40, 30, 60)), (0, 0.60, _box_mask(2, 2, 30, 30))],
        2: [(2, 0.90, _box_mask(12, 10, 50, 44)), (0, 0.20, _box_mask(0, 0, 10, 10)),
            (1, 0.50, _box_mask(52, 52, 63, 63))],
        3: [(1, 0.85, _box_mask(0, 0, 18, 20)), (1, 0.40, _box_mask(30, 30, 45, 62)),
            (2, 0.70, _box_mask(30, 30, 62, 62))],
    }
    return gts, preds


def _coco_gt_json(gts):
    images, annos = [], []
    for image_id, objs in gts.items():
        images.append({"id": image_id, "height": INST_H, "width": INST_W, "file_name": f"{image_id}.jpg"})
        for cat, m in objs:
            rle = mask_util.encode(np.asfortranarray(m))
            ys, xs = np.nonzero(m)
            annos.append({
                "id": len(annos) + 1, "image_id": image_id, "category_id": cat, "iscrowd": 0,
                "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                "area": int(m.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)],
            })
    cats = [{"id": c, "name": f"cls{c}", "supercategory": "x"} for c in INST_DATASET_IDS]
    return {"images": images, "annotations": annos, "categories": cats}


def _reference_coco_stats(json_file, preds):
    reverse = {v: k for k, v in INST_DATASET_IDS.items()}
    results = []
    for image_id, objs in preds.items():
        for cls, score, m in objs:
            rle = mask_util.encode(np.asfortranarray(m))
            rle["counts"] = rle["counts"].decode("ascii")
            results.append({"image_id": image_id, "category_id": reverse[cls], "segmentation": rle, "score": score})
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(json_file)
        ev = COCOeval(gt, gt.loadRes(results), "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        p = ev.eval["precision"][:, :, k, 0, -1]
        p = p[p > -1]
        per_class[f"AP-cls{cat}"] = 100 * float(p.mean()) if p.size else float("nan")
    return ev.stats, per_class


def test_instance_evaluator_equals_cocoeval_with_noncontiguous_ids(tmp_path, dataset_name):
    gts, preds = _instance_case()
    json_file = str(tmp_path / "gt.json")
    write_json(json_file, _coco_gt_json(gts))
    MetadataCatalog.get(dataset_name).set(
        json_file=json_file,
        thing_classes=[f"cls{c}" for c in INST_DATASET_IDS],
        thing_dataset_id_to_contiguous_id=INST_DATASET_IDS,
        evaluator_type="coco",
    )
    ev = InstanceSegEvaluator(dataset_name, tasks=("segm",), distributed=False, output_dir=str(tmp_path / "out"))
    ev.reset()
    for image_id, objs in preds.items():
        inst = Instances((INST_H, INST_W))
        inst.pred_masks = torch.from_numpy(np.stack([m for _, _, m in objs])).bool()
        inst.scores = torch.tensor([s for _, s, _ in objs])
        inst.pred_classes = torch.tensor([c for c, _, _ in objs])
        inst.pred_boxes = Boxes(torch.zeros(len(objs), 4))  # mask-classification models give none
        ev.process([{"image_id": image_id, "height": INST_H, "width": INST_W}], [{"instances": inst}])
    res = ev.evaluate()["segm"]

    stats, per_class = _reference_coco_stats(json_file, preds)
    for k, name in enumerate(("AP", "AP50", "AP75", "APs", "APm", "APl")):
        ref = 100 * stats[k] if stats[k] >= 0 else float("nan")
        assert res[name] == pytest.approx(ref, abs=1e-9, nan_ok=True), name
    for name, ref in per_class.items():
        assert res[name] == pytest.approx(ref, abs=1e-9, nan_ok=True), name
    # the case is not degenerate: imperfect but non-zero AP, medium objects present
    assert 10 < res["AP"] < 90 and not math.isnan(res["APm"])
    assert (tmp_path / "out" / "coco_instances_results.json").exists()


def test_instance_evaluator_rejects_unknown_contiguous_class(tmp_path, dataset_name):
    gts, _ = _instance_case()
    json_file = str(tmp_path / "gt.json")
    write_json(json_file, _coco_gt_json(gts))
    MetadataCatalog.get(dataset_name).set(
        json_file=json_file, thing_classes=["a", "b", "c"], thing_dataset_id_to_contiguous_id=INST_DATASET_IDS
    )
    ev = InstanceSegEvaluator(dataset_name, tasks=("segm",), distributed=False)
    ev.reset()
    inst = Instances((INST_H, INST_W))
    inst.pred_masks = torch.from_numpy(_box_mask(0, 0, 5, 5)[None]).bool()
    inst.scores = torch.tensor([0.5])
    inst.pred_classes = torch.tensor([5])
    inst.pred_boxes = Boxes(torch.zeros(1, 4))
    ev.process([{"image_id": 1, "height": INST_H, "width": INST_W}], [{"instances": inst}])
    with pytest.raises(ValueError, match="contiguous class 5"):
        ev.evaluate()
    with pytest.raises(ValueError, match="Unknown COCO AP backend"):
        InstanceSegEvaluator(dataset_name, distributed=False, backend="cocoapi")


# ----------------------------------------------------------------------------- panoptic PQ

# things A (dataset id 11), B (17); stuff S (40). Mask2Former convention: the stuff mapping
# holds every class, things first.
PAN_THING_IDS = {11: 0, 17: 1}
PAN_ALL_IDS = {11: 0, 17: 1, 40: 2}
PAN_H, PAN_W = 10, 20
LABEL_DIVISOR = 1000


def _panoptic_case():
    """One 10x20 image.

    GT: A rows 0-3 x cols 0-9 (40 px), B rows 0-3 x cols 10-19 (40 px), S rows 4-9 (120 px).
    Prediction: A rows 0-2 x cols 0-9 (30 px)        -> TP, IoU 30/40 = 0.75
                A rows 4-5 x cols 0-4 (10 px)        -> FP (inside the GT stuff)
                nothing over B (void)                -> FN
                S rows 4-9 minus the FP (110 px)     -> TP, IoU 110/120
    """
    gt = np.zeros((PAN_H, PAN_W), np.int64)
    gt[0:4, 0:10], gt[0:4, 10:20], gt[4:10, :] = 1, 2, 3
    gt_segments = [
        {"id": 1, "category_id": 11, "iscrowd": 0, "area": 40, "bbox": [0, 0, 10, 4]},
        {"id": 2, "category_id": 17, "iscrowd": 0, "area": 40, "bbox": [10, 0, 10, 4]},
        {"id": 3, "category_id": 40, "iscrowd": 0, "area": 120, "bbox": [0, 4, 20, 6]},
    ]
    pred = np.zeros((PAN_H, PAN_W), np.int64)
    pred[0:3, 0:10] = 1
    pred[4:10, :] = 3
    pred[4:6, 0:5] = 2
    pred_segments = [  # contiguous ids, as a model outputs them
        {"id": 1, "category_id": 0, "isthing": True},
        {"id": 2, "category_id": 0, "isthing": True},
        {"id": 3, "category_id": 2, "isthing": False},
    ]
    return gt, gt_segments, pred, pred_segments


def _expected_pq():
    iou_s = 110 / 120
    per_class = {  # (PQ, SQ, RQ) = (sum IoU / (TP + FP/2 + FN/2), sum IoU / TP, TP / (TP + FP/2 + FN/2))
        "A": (0.75 / 1.5, 0.75, 1 / 1.5),  # TP 1, FP 1
        "B": (0.0, 0.0, 0.0),  # FN 1
        "S": (iou_s, iou_s, 1.0),  # TP 1
    }
    groups = {"": ("A", "B", "S"), "_th": ("A", "B"), "_st": ("S",)}
    out = {}
    for suffix, names in groups.items():
        for k, metric in enumerate(("PQ", "SQ", "RQ")):
            out[metric + suffix] = 100 * float(np.mean([per_class[n][k] for n in names]))
    return out


def _register_panoptic(tmp_path, dataset_name, gt, gt_segments):
    root = tmp_path / "panoptic_gt"
    save_png(str(root / "img1.png"), id2rgb(gt))
    json_file = str(tmp_path / "panoptic_gt.json")
    write_json(json_file, {
        "images": [{"id": 1, "file_name": "img1.jpg", "height": PAN_H, "width": PAN_W}],
        "annotations": [{"image_id": 1, "file_name": "img1.png", "segments_info": gt_segments}],
        "categories": [
            {"id": 11, "name": "A", "isthing": 1, "supercategory": "x"},
            {"id": 17, "name": "B", "isthing": 1, "supercategory": "x"},
            {"id": 40, "name": "S", "isthing": 0, "supercategory": "x"},
        ],
    })
    MetadataCatalog.get(dataset_name).set(
        panoptic_root=str(root),
        panoptic_json=json_file,
        thing_classes=["A", "B"],
        stuff_classes=["A", "B", "S"],
        thing_dataset_id_to_contiguous_id=PAN_THING_IDS,
        stuff_dataset_id_to_contiguous_id=PAN_ALL_IDS,
        label_divisor=LABEL_DIVISOR,
        evaluator_type="coco_panoptic_seg",
    )


def _run_pq(dataset_name, pred, segments_info, output_dir=None, backend="hotcoco"):
    ev = PanopticQualityEvaluator(dataset_name, output_dir, backend=backend)
    ev.reset()
    ev.process([{"image_id": 1, "file_name": "/some/where/img1.jpg"}], [{"panoptic_seg": (torch.from_numpy(pred), segments_info)}])
    return ev.evaluate()["panoptic_seg"]


def test_panoptic_quality_hand_computed_hotcoco(tmp_path, dataset_name):
    gt, gt_segments, pred, pred_segments = _panoptic_case()
    _register_panoptic(tmp_path, dataset_name, gt, gt_segments)
    res = _run_pq(dataset_name, pred, pred_segments, str(tmp_path / "out"))
    expected = _expected_pq()
    assert set(res) == set(expected)
    for k, v in expected.items():
        assert res[k] == pytest.approx(v, abs=1e-6), k
    assert (tmp_path / "out" / "predictions.json").exists()

    # same prediction as "category * label_divisor + instance" ids with segments_info=None
    # (-1 = void), the form detectron2's panoptic models output
    encoded = np.full_like(pred, -1)
    encoded[pred == 1] = 0 * LABEL_DIVISOR + 1
    encoded[pred == 2] = 0 * LABEL_DIVISOR + 2
    encoded[pred == 3] = 2 * LABEL_DIVISOR
    res2 = _run_pq(dataset_name, encoded, None)
    for k, v in expected.items():
        assert res2[k] == pytest.approx(v, abs=1e-6), k


def test_panoptic_quality_perfect_and_errors(tmp_path, dataset_name):
    gt, gt_segments, _, _ = _panoptic_case()
    _register_panoptic(tmp_path, dataset_name, gt, gt_segments)
    perfect = [{"id": 1, "category_id": 0, "isthing": True}, {"id": 2, "category_id": 1, "isthing": True},
               {"id": 3, "category_id": 2, "isthing": False}]
    res = _run_pq(dataset_name, gt, perfect)
    assert all(v == pytest.approx(100.0) for v in res.values()), res
    with pytest.raises(ValueError, match="Unknown panoptic backend"):
        PanopticQualityEvaluator(dataset_name, backend="pq")
    ev = PanopticQualityEvaluator(dataset_name)
    ev.reset()
    with pytest.raises(ValueError, match="contiguous category 7"):
        ev.process([{"image_id": 1, "file_name": "img1.jpg"}],
                   [{"panoptic_seg": (torch.from_numpy(gt), [{"id": 1, "category_id": 7, "isthing": False}])}])


def test_panoptic_quality_panopticapi_backend(tmp_path, dataset_name):
    """The reference backend is optional: it gives the hand-computed numbers when installed,
    and a clear install hint when not."""
    gt, gt_segments, pred, pred_segments = _panoptic_case()
    _register_panoptic(tmp_path, dataset_name, gt, gt_segments)
    try:
        import panopticapi.evaluation  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="panopticapi-lite"):
            PanopticQualityEvaluator(dataset_name, backend="panopticapi")
        return
    res = _run_pq(dataset_name, pred, pred_segments, backend="panopticapi")
    for k, v in _expected_pq().items():
        assert res[k] == pytest.approx(v, abs=1e-6), k


# ----------------------------------------------------------------------------- semantic


def test_sem_seg_evaluator_hand_computed(tmp_path, dataset_name):
    """4 classes on a 4x4 image; class 3 is predicted once but absent from the ground truth,
    which (detectron2's definition) adds a zero to the mIoU denominator."""
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2], [255, 255, 2, 2]], np.uint8)
    pred = np.array([[0, 1, 1, 1], [0, 0, 1, 3], [2, 2, 0, 2], [1, 1, 2, 2]])
    save_png(str(tmp_path / "gt.png"), gt)
    DatasetCatalog.register(
        dataset_name, lambda: [{"file_name": "img.jpg", "sem_seg_file_name": str(tmp_path / "gt.png")}]
    )
    MetadataCatalog.get(dataset_name).set(stuff_classes=["a", "b", "c", "d"], ignore_label=255)
    ev = SemSegEvaluator(dataset_name, distributed=False)
    ev.reset()
    logits = torch.nn.functional.one_hot(torch.from_numpy(pred), 4).permute(2, 0, 1).float()
    ev.process([{"file_name": "img.jpg"}], [{"sem_seg": logits}])
    res = ev.evaluate()["sem_seg"]
    # 14 labelled pixels; per class (tp, gt, pred): a (3, 4, 4), b (3, 4, 4), c (5, 6, 5), d (0, 0, 1)
    iou = {"a": 3 / 5, "b": 3 / 5, "c": 5 / 6}
    expected = {
        "mIoU": 100 * (iou["a"] + iou["b"] + iou["c"]) / 4,
        "fwIoU": 100 * (iou["a"] * 4 + iou["b"] * 4 + iou["c"] * 6) / 14,
        "mACC": 100 * (3 / 4 + 3 / 4 + 5 / 6) / 3,
        "pACC": 100 * 11 / 14,
        "IoU-a": 60.0, "IoU-c": 100 * 5 / 6, "ACC-c": 100 * 5 / 6,
    }
    for k, v in expected.items():
        assert res[k] == pytest.approx(v, abs=1e-9), k
    assert math.isnan(res["IoU-d"]) and math.isnan(res["ACC-d"])


def test_instance_tasks_default_to_segm_without_real_boxes():
    from maskformer_d2.evaluation.instance_evaluation import InstanceSegEvaluator

    zero_boxes = [{"bbox": [0, 0, 0, 0], "segmentation": {}, "category_id": 0}]
    real_boxes = [{"bbox": [1, 2, 3, 4], "segmentation": {}, "category_id": 0}]
    assert InstanceSegEvaluator._tasks_from_predictions(None, []) == ["segm"]
    assert InstanceSegEvaluator._tasks_from_predictions(None, zero_boxes) == ["segm"]
    assert InstanceSegEvaluator._tasks_from_predictions(None, real_boxes) == ["bbox", "segm"]
