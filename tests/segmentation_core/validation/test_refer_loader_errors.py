"""RefCOCO-layout loading: a ref whose ``ann_id`` is absent from ``instances.json`` is named
(file, ref id, reason) and goes through ``DATALOADER.BAD_RECORD_POLICY`` (fatal: error; skip:
left out and counted) instead of ``KeyError: 205``; a truncated ``refs(unc).p`` is an error
naming the file instead of a bare ``UnpicklingError``."""
import json
import pickle

import numpy as np
import pytest
from PIL import Image

from segmentation_core.data.refer import DatasetFileError, load_refer_json
from segmentation_core.validation import BadRecordError, RecordChecker, validate_dataset_dicts
from segmentation_core.validation.stats import BadRecordCounter
from restr_d2.data.dataset_mappers import ReferringDatasetMapper


def _ref(ref_id, ann_id, sentences):
    return {"ref_id": ref_id, "ann_id": ann_id, "image_id": 1, "category_id": 1, "split": "train",
            "sent_ids": list(range(len(sentences))),
            "sentences": [{"sent_id": 10 * ref_id + k, "sent": s, "raw": s, "tokens": s.split()}
                          for k, s in enumerate(sentences)]}


@pytest.fixture
def refer(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "a.jpg")
    refer_dir = tmp_path / "refcoco"
    refer_dir.mkdir()
    (refer_dir / "instances.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 20, "width": 30}],
        "annotations": [{"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [2, 2, 10, 10],
                         "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]}],
        "categories": [{"id": 1, "name": "thing"}],
    }))
    refs = [_ref(1, 7, ["the square", "the left thing"]), _ref(2, 205, ["the missing one", "gone"])]
    with open(refer_dir / "refs(unc).p", "wb") as f:
        pickle.dump(refs, f)
    return refer_dir, images


def test_missing_ann_id_is_named_and_fatal_by_default(refer):
    refer_dir, images = refer
    records = load_refer_json(str(refer_dir), "unc", "train", str(images))
    assert len(records) == 4
    with pytest.raises(BadRecordError, match=r"ref 2 of .*refs\(unc\)\.p: its ann_id 205 is not in .*instances.json") as e:
        validate_dataset_dicts(records, RecordChecker(num_classes=1), "fatal", "refer")
    assert e.value.reason == "missing_field"


def test_missing_ann_id_skipped_and_counted_with_skip_policy(refer):
    refer_dir, images = refer
    records = load_refer_json(str(refer_dir), "unc", "train", str(images))
    counter = BadRecordCounter(shared=False)
    kept = validate_dataset_dicts(records, RecordChecker(num_classes=1), "skip", "refer", counter=counter)
    assert [r["ref_id"] for r in kept] == [1, 1]
    assert counter.counts() == {"missing_field": 2}  # one per sentence of ref 2


def test_missing_ann_id_rejected_by_the_referring_mapper(refer):
    refer_dir, images = refer
    bad = [r for r in load_refer_json(str(refer_dir), "unc", "train", str(images)) if r["ref_id"] == 2][0]
    mapper = ReferringDatasetMapper(False, image_size=32, image_format="RGB")
    with pytest.raises(BadRecordError, match="ann_id 205"):
        mapper(bad)


def test_truncated_refs_pickle_names_the_file(refer):
    refer_dir, images = refer
    path = refer_dir / "refs(unc).p"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(DatasetFileError, match=r"refs\(unc\)\.p cannot be unpickled .*truncated or corrupt"):
        load_refer_json(str(refer_dir), "unc", "train", str(images))
