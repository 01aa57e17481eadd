"""The MaskFormer-family panoptic mappers reject a panoptic PNG whose ids do not match the
record's segments_info, naming the file and the ids, and the skip policy counts such records."""
import numpy as np
import pytest
from PIL import Image

from segmentation_core.validation import BadRecordError, SafeMapper
import maskformer_d2  # noqa: F401  (registers the mappers)
from segmentation_core.engine import get_mapper_class as mapper_class


def _record(tmp_path, png_ids, info_ids):
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(tmp_path / "img.png")
    pan = np.zeros((16, 16, 3), np.uint8)
    for k, i in enumerate(png_ids):
        pan[:, k * 4:(k + 1) * 4, 0] = i  # id = R when G = B = 0
    Image.fromarray(pan).save(tmp_path / "pan.png")
    info = [{"id": i, "category_id": 0, "iscrowd": 0, "isthing": True} for i in info_ids]
    return {"file_name": str(tmp_path / "img.png"), "pan_seg_file_name": str(tmp_path / "pan.png"),
            "segments_info": info, "height": 16, "width": 16}


@pytest.mark.parametrize("name", ["mask_former_panoptic", "detr_panoptic", "coco_panoptic_lsj"])
def test_panoptic_id_mismatch_is_rejected(tmp_path, name):
    cls = mapper_class(name)
    kwargs = {
        "mask_former_panoptic": dict(augmentations=[], ignore_label=255, size_divisibility=-1),
        "detr_panoptic": dict(crop_gen=None, tfm_gens=[]),
        "coco_panoptic_lsj": dict(tfm_gens=[]),
    }[name]
    mapper = cls(True, image_format="RGB", **kwargs)
    good = mapper(_record(tmp_path, [1, 2], [1, 2]))
    assert len(good["instances"]) == 2
    with pytest.raises(BadRecordError, match=r"pan.png.*ids \[2\] are in the PNG but not in segments_info"):
        mapper(_record(tmp_path, [1, 2], [1, 3]))
    safe = SafeMapper(mapper, "skip", name=f"test-{name}")
    assert safe(_record(tmp_path, [1, 2], [1, 3])) is None
