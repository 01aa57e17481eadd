"""Input validation on the generated shapes datasets: every record and label file of the
generator passes the checks, and corrupting one is caught (or skipped) by name."""
import logging

import numpy as np
import pytest

from detectron2.data import DatasetCatalog, MetadataCatalog
from segmentation_core.validation import (
    BadRecordError, RecordChecker, SafeMapper, check_panoptic_ids, check_sem_seg_labels,
    read_image_checked, validate_dataset_dicts,
)
from restr_d2.data.dataset_mappers import ReferringDatasetMapper

P = "testshapes"


def _rgb2id(color):
    color = color.astype(np.int64)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


@pytest.mark.parametrize("kind", ["instance", "panoptic", "refcoco_unc", "sem_seg"])
def test_generated_records_pass_unchanged(shapes_root, kind, caplog):
    name = f"{P}_{kind}_val"
    records = DatasetCatalog.get(name)
    checker = RecordChecker.from_metadata(MetadataCatalog.get(name), empty_annotations="reject"
                                          if kind in ("instance", "refcoco_unc") else "keep")
    with caplog.at_level(logging.INFO, logger="segmentation_core.validation.records"):
        out = validate_dataset_dicts(records, checker, "fatal", name)
    assert len(out) == len(records) and all(a is b for a, b in zip(out, records))
    assert caplog.records[-1].message == f"Dataset {name}: 0 bad records of {len(records)} skipped"


def test_generated_label_files_pass_and_corruptions_are_named(shapes_root):
    meta = MetadataCatalog.get(f"{P}_panoptic_val")
    for rec in DatasetCatalog.get(f"{P}_panoptic_val"):
        pan = _rgb2id(read_image_checked(rec["pan_seg_file_name"], "RGB"))
        check_panoptic_ids(pan, rec["segments_info"], rec["pan_seg_file_name"])
        sem = read_image_checked(rec["sem_seg_file_name"])
        check_sem_seg_labels(sem, len(meta.stuff_classes), meta.ignore_label, rec["sem_seg_file_name"])
    dropped = rec["segments_info"][-1]["id"]
    with pytest.raises(BadRecordError, match=rf"ids \[{dropped}\] are in the PNG but not in segments_info"):
        check_panoptic_ids(pan, rec["segments_info"][:-1], rec["pan_seg_file_name"])
    stuff = [int(v) for v in np.unique(sem) if 4 <= v < 255]  # stuff ids exceed a 4-class model
    assert stuff
    with pytest.raises(BadRecordError, match=rf"semantic labels \{stuff}"):
        check_sem_seg_labels(sem, 4, meta.ignore_label, rec["sem_seg_file_name"])


def test_referring_mapper_under_skip_policy(shapes_root, tmp_path, caplog):
    records = DatasetCatalog.get(f"{P}_refcoco_unc_val")[:4]
    data = open(records[0]["file_name"], "rb").read()
    broken = tmp_path / "broken.png"
    broken.write_bytes(data[: len(data) // 2])
    bad = [
        dict(records[0], file_name=str(broken)),
        dict(records[1], sentence=" ... "),
        dict(records[2], file_name=str(tmp_path / "missing.png")),
        dict(records[3], annotations=[{"segmentation": {"size": [3, 3], "counts": "abc"}}]),
    ]
    fatal = SafeMapper(ReferringDatasetMapper(True, image_size=48), "fatal")
    with pytest.raises(BadRecordError, match="broken.png"):
        fatal(bad[0])
    mapper = SafeMapper(ReferringDatasetMapper(True, image_size=48), "skip", name="referring")
    outs = [mapper(r) for r in records + bad]
    assert all(o is not None for o in outs[:4]) and outs[4:] == [None] * 4
    assert mapper.counter.counts() == {"unreadable_image": 1, "bad_sentence": 1, "missing_file": 1,
                                       "bad_segmentation": 1}
    with caplog.at_level(logging.INFO, logger="segmentation_core.validation.safe_mapper"):
        assert mapper.log_summary()
    assert "referring (BAD_RECORD_POLICY=skip): 4 bad records skipped" in caplog.records[-1].message
    # training records need the referred object's mask
    with pytest.raises(BadRecordError, match="without 'annotations'"):
        ReferringDatasetMapper(True, image_size=48)(dict(records[0], annotations=[]))


def test_referring_mapper_reads_limits_from_config(shapes_root):
    from detectron2.config import get_cfg
    from segmentation_core.validation import add_validation_config
    from restr_d2.config import add_restr_config

    cfg = get_cfg()
    add_restr_config(cfg)
    add_validation_config(cfg)
    cfg.INPUT.IMAGE_SIZE = 48
    cfg.INPUT.MAX_IMAGE_PIXELS = 100
    mapper = ReferringDatasetMapper(cfg, False)
    rec = DatasetCatalog.get(f"{P}_refcoco_unc_val")[0]
    with pytest.raises(BadRecordError, match="INPUT.MAX_IMAGE_PIXELS") as err:
        mapper(rec)
    assert err.value.reason == "image_too_large"
