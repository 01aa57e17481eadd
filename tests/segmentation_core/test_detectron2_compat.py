"""The detectron2 v0.6 code paths that the install patches really run on NumPy 2 / Pillow 10+,
and compiled-only ops fail with a clear message instead of an ImportError at import time."""
import numpy as np
import pytest
import torch
from PIL import Image

import detectron2
from detectron2 import _C
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.build import print_instances_class_histogram
from detectron2.data.transforms import ExtentTransform
from detectron2.evaluation import SemSegEvaluator
from detectron2.structures import BitMasks, PolygonMasks, polygons_to_bitmask
from detectron2.utils.visualizer import Visualizer


def test_numpy_and_pillow_are_modern():
    assert int(np.__version__.split(".")[0]) >= 2
    assert not hasattr(Image, "LINEAR")  # the alias v0.6 used is really gone
    assert not hasattr(np, "float") or np.float is not float  # np.float removed in 1.24


def test_extent_transform_default_interpolation():
    # v0.6 defaulted to Image.LINEAR here.
    img = np.arange(32 * 48 * 3, dtype=np.uint8).reshape(32, 48, 3)
    out = ExtentTransform((0, 0, 48, 32), (16, 24)).apply_image(img)
    assert out.shape == (16, 24, 3)


def test_polygon_masks_and_empty_polygons():
    square = [np.array([2, 2, 10, 2, 10, 10, 2, 10], dtype=np.float64)]
    bitmask = polygons_to_bitmask(square, 16, 16)
    assert bitmask.dtype == bool and bitmask.sum() == 64
    assert polygons_to_bitmask([], 8, 8).dtype == bool  # the np.bool path
    masks = PolygonMasks([square])
    assert masks.area().tolist() == [64.0]
    assert BitMasks.from_polygon_masks(masks, 16, 16).tensor.sum().item() == 64


def test_sem_seg_evaluator_runs(tmp_path):
    gt = np.array([[0, 0, 1, 1], [0, 0, 1, 255]], dtype=np.uint8)
    Image.fromarray(gt).save(tmp_path / "gt.png")
    name = "compat_semseg_tiny"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: [{"file_name": "x.png", "sem_seg_file_name": str(tmp_path / "gt.png")}])
        MetadataCatalog.get(name).set(stuff_classes=["a", "b"], ignore_label=255)
    ev = SemSegEvaluator(name, distributed=False)
    ev.reset()
    pred = torch.zeros(2, 2, 4)
    pred[0, :, :2] = 1
    pred[1, 0, 2:] = 1
    pred[0, 1, 2] = 2  # one pixel of class 1 predicted as class 0
    ev.process([{"file_name": "x.png"}], [{"sem_seg": pred}])
    res = ev.evaluate()["sem_seg"]
    # class 0: TP 4, FP 1 -> IoU 4/5; class 1: TP 2, FN 1 -> IoU 2/3 (pixel (1,3) is ignored)
    assert res["mIoU"] == pytest.approx(100 * (0.8 + 2 / 3) / 2)
    assert res["pACC"] == pytest.approx(100 * 6 / 7)


def test_class_histogram_and_visualizer():
    dicts = [{"annotations": [{"category_id": 0}, {"category_id": 1, "iscrowd": 0}]}]
    print_instances_class_histogram(dicts, ["a", "b"])  # v0.6 used np.int here
    img = np.zeros((16, 16, 3), dtype=np.uint8)
    meta = MetadataCatalog.get("compat_vis").set(stuff_classes=["a", "b"], thing_classes=["b"])
    seg = torch.zeros(16, 16, dtype=torch.int32)
    seg[4:12, 4:12] = 1
    out = Visualizer(img, meta).draw_panoptic_seg(seg, [{"id": 1, "category_id": 0, "isthing": True}])
    assert out.get_image().shape == (16, 16, 3)


def test_compiled_ops_fail_clearly():
    from detectron2.layers import DeformConv
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    # Deformable conv runs on CPU through torchvision's op in v0.6.
    conv = DeformConv(2, 2, 3, padding=1)
    assert conv(torch.zeros(1, 2, 5, 5), torch.zeros(1, 18, 5, 5)).shape == (1, 2, 5, 5)
    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]])
    with pytest.raises(_C.CompiledOpUnavailableError, match="'box_iou_rotated' is unavailable in this build"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(_C.CompiledOpUnavailableError, match="use_fast_impl=False"):
        _C.COCOevalEvaluateImages


def test_install_records_patches():
    from pathlib import Path

    marker = Path(detectron2.__file__).parent / "_restr_d2_patches.txt"
    text = marker.read_text()
    assert "launch.py" in text and "_C.py" in text


def test_default_predictor_names_a_missing_image(tmp_path):
    """cv2.imread gives None for an unreadable file: DefaultPredictor says so (our install's patch),
    instead of "'NoneType' object is not subscriptable"."""
    import cv2
    from detectron2.engine import DefaultPredictor

    from segmentation_core.config import build_cfg, get_config_file

    from pathlib import Path

    if not Path(detectron2.__file__).with_name("_restr_d2_patches.txt").is_file():
        pytest.skip("a detectron2 not installed by tools/install/install_detectron2.py: its DefaultPredictor is unpatched")
    (tmp_path / "empty.png").write_bytes(b"")
    image = cv2.imread(str(tmp_path / "empty.png"))
    assert image is None
    predictor = DefaultPredictor(build_cfg(get_config_file("shapes/segmenter_linear.yaml")))
    with pytest.raises(TypeError, match=r"got None: cv2.imread returns None.*read_image_checked"):
        predictor(image)
    with pytest.raises(TypeError, match=r"expects an image array of shape \(H, W, C\), got ndarray \(4, 4\)"):
        predictor(np.zeros((4, 4), np.uint8))
    assert predictor(np.zeros((32, 48, 3), np.uint8))["sem_seg"].shape[-2:] == (32, 48)
