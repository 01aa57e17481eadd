"""Bad data: the image reader (corrupt / unusual / huge files), record validation, label-file
checks and the bad-record policy (SafeMapper), alone and inside detectron2's data loader."""
import logging
import pickle
import struct
import zlib

import numpy as np
import pytest
from PIL import Image, ImageOps

from detectron2.config import get_cfg
from detectron2.data import build_detection_train_loader
from detectron2.data.detection_utils import SizeMismatchError, read_image
from detectron2.structures import BoxMode

from segmentation_core.resume import build_resumable_train_loader
from segmentation_core.validation import (
    REASONS, BadRecordError, BadRecordSummaryHook, ImageReadError, ImageTooLargeError,
    MissingImageError, RecordChecker, SafeMapper, add_validation_config, bad_record_policy,
    check_panoptic_ids, check_sem_seg_labels, image_reader_kwargs, read_image_checked,
    validate_dataset_dicts,
)
from segmentation_core.validation.stats import BadRecordCounter, format_summary


def _rgb(h=12, w=20, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _png_header_only(path, width, height):
    """A PNG whose header claims width x height, with (almost) no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


# -- image reader: files that cannot be read ------------------------------------------------------
def test_corrupt_truncated_garbage_empty_and_missing_files_name_file_and_reason(tmp_path):
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.png")
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "full.jpg", quality=95)
    for ext in ("png", "jpg"):
        data = (tmp_path / f"full.{ext}").read_bytes()
        (tmp_path / f"truncated.{ext}").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.jpg").write_bytes(b"this is not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello")

    cases = {
        "truncated.png": ("unreadable_image", "truncated"),
        "truncated.jpg": ("unreadable_image", "truncated"),
        "garbage.jpg": ("unsupported_image", "not an image PIL can identify"),
        "empty.png": ("unsupported_image", "not an image PIL can identify"),
        "notes.txt": ("unsupported_image", "not an image PIL can identify"),
    }
    for name, (reason, text) in cases.items():
        path = str(tmp_path / name)
        with pytest.raises(ImageReadError) as err:
            read_image_checked(path, "RGB")
        assert err.value.reason == reason and err.value.file_name == path
        assert name in str(err.value) and text in str(err.value)
        assert isinstance(err.value, OSError) and isinstance(err.value, BadRecordError)

    with pytest.raises(MissingImageError, match="does not exist") as err:
        read_image_checked(str(tmp_path / "nope.png"), "RGB")
    assert isinstance(err.value, FileNotFoundError) and err.value.reason == "missing_file"
    with pytest.raises(MissingImageError, match="nor its folder"):
        read_image_checked(str(tmp_path / "no_dir" / "x.png"), "RGB")
    # an unknown INPUT.FORMAT is a configuration error: never a skippable bad record
    with pytest.raises(ValueError, match="INPUT.FORMAT") as err:
        read_image_checked(str(tmp_path / "full.png"), "XYZ")
    assert not isinstance(err.value, BadRecordError)


def test_errors_survive_pickling_between_worker_processes():
    for e in (BadRecordError("a.png", "bad_box", "x"), MissingImageError("b.png"),
              ImageTooLargeError("c.png", "big"), ImageReadError("d.png", "unreadable_image", "t")):
        back = pickle.loads(pickle.dumps(e))
        assert type(back) is type(e) and str(back) == str(e) and back.reason == e.reason
    with pytest.raises(ValueError, match="unknown bad-record reason"):
        BadRecordError("a", "made_up", "x")


def test_huge_images_are_refused_from_the_header_before_decoding(tmp_path):
    # 12000 x 12000 RGB would need 432 MB: refused from the header alone (the file has no pixels)
    big = _png_header_only(tmp_path / "big.png", 12000, 12000)
    with pytest.raises(ImageTooLargeError, match=r"12000 x 12000 = 144000000 pixels.*INPUT.MAX_IMAGE_PIXELS"):
        read_image_checked(str(big), "RGB")
    # beyond PIL's own decompression-bomb limit: same error type, with the PIL setting to raise
    bomb = _png_header_only(tmp_path / "bomb.png", 100000, 100000)
    with pytest.raises(ImageTooLargeError, match="MAX_IMAGE_PIXELS") as err:
        read_image_checked(str(bomb), "RGB")
    assert err.value.reason == "image_too_large"
    # the limit is configurable
    Image.fromarray(_rgb(30, 40)).save(tmp_path / "small.png")
    with pytest.raises(ImageTooLargeError, match="1200 pixels exceeds the limit of 1000"):
        read_image_checked(str(tmp_path / "small.png"), "RGB", max_pixels=1000)
    assert read_image_checked(str(tmp_path / "small.png"), "RGB", max_pixels=1200).shape == (30, 40, 3)
    assert read_image_checked(str(tmp_path / "small.png"), "RGB", max_pixels=None).shape == (30, 40, 3)


# -- image reader: unusual pixel formats ---------------------------------------------------------
def test_pixel_formats_are_converted(tmp_path):
    rgb = _rgb()
    gray = rgb[..., 0]
    # 8-bit grayscale -> three equal channels; "L" keeps one channel (detectron2's layout)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    out = read_image_checked(str(tmp_path / "gray.png"), "RGB")
    assert out.shape == (12, 20, 3) and all(np.array_equal(out[..., c], gray) for c in range(3))
    assert read_image_checked(str(tmp_path / "gray.png"), "L").shape == (12, 20, 1)

    # RGBA: alpha dropped, colours kept (detectron2's behaviour, no compositing)
    alpha = np.full((12, 20, 1), 7, np.uint8)
    Image.fromarray(np.concatenate([rgb, alpha], 2), "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image_checked(str(tmp_path / "rgba.png"), "RGB"), rgb)
    np.testing.assert_array_equal(read_image_checked(str(tmp_path / "rgba.png"), "BGR"), rgb[..., ::-1])
    assert read_image_checked(str(tmp_path / "rgba.png"), "RGBA").shape == (12, 20, 4)

    # palette, with and without a transparent entry -> the palette colours
    pal = Image.fromarray((np.arange(240).reshape(12, 20) % 4).astype(np.uint8), "P")
    palette = [255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9] + [0] * (256 * 3 - 12)
    pal.putpalette(palette)
    pal.save(tmp_path / "pal.png")
    pal.save(tmp_path / "pal_t.png", transparency=0)
    expected = np.asarray(palette, np.uint8).reshape(-1, 3)[np.asarray(pal)]
    for name in ("pal.png", "pal_t.png"):
        np.testing.assert_array_equal(read_image_checked(str(tmp_path / name), "RGB"), expected)
    # as a label map (format None) a palette PNG gives its indices, as VOC-style labels need
    np.testing.assert_array_equal(read_image_checked(str(tmp_path / "pal.png")), np.asarray(pal))

    # 1-bit images
    Image.fromarray(gray > 128).save(tmp_path / "bits.png")
    assert set(np.unique(read_image_checked(str(tmp_path / "bits.png"), "RGB"))) <= {0, 255}


def test_sixteen_bit_images_are_scaled_not_saturated(tmp_path):
    values = (np.arange(12 * 20).reshape(12, 20) * 273).astype(np.uint16)  # up to 65247
    Image.fromarray(values).save(tmp_path / "g16.png")
    out = read_image_checked(str(tmp_path / "g16.png"), "RGB")
    expected = np.round(values / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], expected)
    # detectron2's read_image saturates: almost every pixel becomes 255
    assert (read_image(str(tmp_path / "g16.png"), "RGB") == 255).mean() > 0.9
    # a 16-bit label map (format None, e.g. ADE20K-full) keeps its raw values
    raw = read_image_checked(str(tmp_path / "g16.png"))
    assert raw.dtype == np.uint16 and np.array_equal(raw, values)
    # 32-bit values beyond 16 bits and float images are refused with the reason
    Image.fromarray(np.full((4, 4), 70000, np.int32), "I").save(tmp_path / "i32.tif")
    with pytest.raises(ImageReadError, match="outside 0..65535"):
        read_image_checked(str(tmp_path / "i32.tif"), "RGB")
    Image.fromarray(np.full((4, 4), 0.5, np.float32), "F").save(tmp_path / "f.tif")
    with pytest.raises(ImageReadError, match="floating-point") as err:
        read_image_checked(str(tmp_path / "f.tif"), "RGB")
    assert err.value.reason == "unsupported_image"


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied_like_detectron2(tmp_path, orientation):
    stored = _rgb(6, 10, seed=orientation)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path = tmp_path / "exif.png"
    Image.fromarray(stored).save(path, exif=exif.tobytes())
    out = read_image_checked(str(path), "RGB")
    # detectron2 (and Pillow's own exif_transpose) give the same upright image
    np.testing.assert_array_equal(out, read_image(str(path), "RGB"))
    np.testing.assert_array_equal(out, np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB")))
    if orientation == 6:  # "rotate 90 degrees clockwise to display"
        np.testing.assert_array_equal(out, np.rot90(stored, k=-1))
    # apply_exif=False returns the stored pixels
    np.testing.assert_array_equal(read_image_checked(str(path), "RGB", apply_exif=False), stored)
    # a record annotated on the stored pixels of a rotated image: the error says why
    if orientation >= 5:
        with pytest.raises(BadRecordError, match="APPLY_EXIF_ORIENTATION False") as err:
            read_image_checked(str(path), "RGB", expected_size=(6, 10))
        assert err.value.reason == "size_mismatch"
        assert read_image_checked(str(path), "RGB", apply_exif=False, expected_size=(6, 10)).shape == (6, 10, 3)


def test_size_mismatch_names_both_sizes(tmp_path):
    Image.fromarray(_rgb(12, 20)).save(tmp_path / "a.png")
    with pytest.raises(BadRecordError, match=r"image is 12 x 20 \(h x w\) but the record says 13 x 20"):
        read_image_checked(str(tmp_path / "a.png"), "RGB", expected_size=(13, 20))


# -- record validation -----------------------------------------------------------------------
def _record(**kw):
    rec = {"file_name": "img_7.jpg", "height": 100, "width": 200, "image_id": 7, "annotations": [
        {"segmentation": [[10, 10, 50, 10, 50, 40]], "bbox": [10, 10, 40, 30],
         "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1},
    ]}
    rec.update(kw)
    return rec


def test_valid_records_are_returned_unchanged():
    rec = _record()
    assert RecordChecker(num_classes=3)(rec) is rec


def test_empty_annotations_keep_or_reject():
    rec = _record(annotations=[])
    assert RecordChecker(empty_annotations="keep")(rec) is rec
    with pytest.raises(BadRecordError, match="img_7.jpg: record has no annotation") as err:
        RecordChecker(empty_annotations="reject")(rec)
    assert err.value.reason == "empty_annotations"
    with pytest.raises(ValueError, match="empty_annotations"):
        RecordChecker(empty_annotations="maybe")


def test_degenerate_polygons_dropped_and_counted_or_rejected():
    ann = {"segmentation": [[1, 1, 5, 5], [10, 10, 50, 10, 50, 40], [1, 2, 3]], "category_id": 0}
    rec = _record(annotations=[ann])
    checker = RecordChecker()
    out = checker(rec)
    assert out is not rec and out["annotations"][0]["segmentation"] == [[10, 10, 50, 10, 50, 40]]
    assert rec["annotations"][0]["segmentation"] == ann["segmentation"]  # input untouched
    assert checker.repairs["polygon_dropped"] == 2
    with pytest.raises(BadRecordError, match=r"annotation 0, polygon 0 has 4 coordinates") as err:
        RecordChecker(degenerate_polygons="reject")(rec)
    assert err.value.reason == "degenerate_polygon"
    # an annotation left without any polygon is dropped; with nothing left, "reject" rejects
    only_bad = _record(annotations=[{"segmentation": [[1, 1, 2, 2]], "category_id": 0}])
    assert RecordChecker()(only_bad)["annotations"] == []
    with pytest.raises(BadRecordError, match="no annotation left"):
        RecordChecker(empty_annotations="reject")(only_bad)
    nan = _record(annotations=[{"segmentation": [[1, 1, float("nan"), 5, 9, 9]], "category_id": 0}])
    with pytest.raises(BadRecordError, match="non-finite"):
        RecordChecker(degenerate_polygons="reject")(nan)


def test_polygons_and_boxes_outside_the_image_are_clipped():
    rec = _record(annotations=[
        {"segmentation": [[-20, -5, 250, 10, 150, 130]], "bbox": [-20, -5, 270, 135],
         "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
        {"bbox": [150, 50, 260, 120], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 0},
    ])
    checker = RecordChecker()
    out = checker(rec)
    poly = np.asarray(out["annotations"][0]["segmentation"][0]).reshape(-1, 2)
    assert poly[:, 0].min() == 0 and poly[:, 0].max() == 200 and poly[:, 1].min() == 0 and poly[:, 1].max() == 100
    assert out["annotations"][0]["bbox"] == [0, 0, 200, 100]  # XYWH after clipping
    assert out["annotations"][1]["bbox"] == [150, 50, 200, 100]
    assert checker.repairs == {"polygon_clipped": 1, "box_clipped": 2}


def test_annotations_entirely_outside_are_dropped():
    rec = _record(annotations=[
        {"segmentation": [[300, 10, 350, 10, 350, 40]], "category_id": 0},
        {"bbox": [500, 500, 10, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
        {"segmentation": [[10, 10, 50, 10, 50, 40]], "category_id": 0},
    ])
    checker = RecordChecker()
    out = checker(rec)
    assert len(out["annotations"]) == 1 and out["annotations"][0] is rec["annotations"][2]
    assert checker.repairs["annotation_dropped"] == 2
    with pytest.raises(BadRecordError, match="4 finite numbers") as err:
        checker(_record(annotations=[{"bbox": [0, 0, float("inf"), 3], "category_id": 0}]))
    assert err.value.reason == "bad_box"


def test_category_ids_out_of_range_name_file_and_id():
    for bad in (5, -1, 3.0, "1", None):
        rec = _record(annotations=[{"segmentation": [[10, 10, 50, 10, 50, 40]], "category_id": bad}])
        with pytest.raises(BadRecordError, match=rf"img_7.jpg: annotation 0: category_id {bad!r} is not a contiguous id in \[0, 5\)") as err:
            RecordChecker(num_classes=5)(rec)
        assert err.value.reason == "category_out_of_range"
    with pytest.raises(BadRecordError, match="the record's category_id 9"):
        RecordChecker(num_classes=5)(_record(category_id=9))
    assert RecordChecker(num_classes=None)(_record(category_id=9))  # no metadata: not checked


def test_rle_of_the_wrong_size_is_rejected():
    rec = _record(annotations=[{"segmentation": {"size": [50, 60], "counts": "abc"}, "category_id": 0}])
    with pytest.raises(BadRecordError, match=r"RLE size \[50, 60\] differs from the image size \[100, 200\]"):
        RecordChecker()(rec)


def test_segments_info_ids_and_categories():
    seg = [{"id": 1, "category_id": 0, "iscrowd": 0}, {"id": 2, "category_id": 4, "iscrowd": 0}]
    checker = RecordChecker(num_segment_classes=5)
    rec = {"file_name": "p.jpg", "segments_info": seg}
    assert checker(rec) is rec
    with pytest.raises(BadRecordError, match=r"repeats ids \[1\]"):
        checker({"file_name": "p.jpg", "segments_info": seg + [dict(seg[0])]})
    with pytest.raises(BadRecordError, match="segment 3: category_id 5"):
        checker({"file_name": "p.jpg", "segments_info": seg + [{"id": 3, "category_id": 5}]})
    with pytest.raises(BadRecordError, match=r"ids \[0\] are not positive"):
        checker({"file_name": "p.jpg", "segments_info": [{"id": 0, "category_id": 0}]})


def test_panoptic_png_ids_must_match_segments_info():
    pan = np.zeros((4, 5), np.int64)
    pan[0, :2], pan[1, :2], pan[3, 4] = 26, 1000, 77
    info = [{"id": 26}, {"id": 1000}, {"id": 77}]
    check_panoptic_ids(pan, info, "p.png")
    with pytest.raises(BadRecordError, match=r"p.png: ids \[77\] are in the PNG but not in segments_info") as err:
        check_panoptic_ids(pan, info[:2], "p.png")
    assert err.value.reason == "panoptic_id_mismatch"
    with pytest.raises(BadRecordError, match=r"ids \[5\] of segments_info are absent from the PNG"):
        check_panoptic_ids(pan, info + [{"id": 5}], "p.png")


def test_semantic_labels_out_of_range():
    sem = np.array([[0, 1, 255], [2, 2, 0]])
    check_sem_seg_labels(sem, 3, 255, "s.png")
    with pytest.raises(BadRecordError, match=r"s.png: semantic labels \[3, 7\] are neither class ids in \[0, 3\)") as err:
        check_sem_seg_labels(np.array([[0, 3], [7, 255]]), 3, 255, "s.png")
    assert err.value.reason == "label_out_of_range"


def test_validate_dataset_dicts_fatal_or_skip_with_summary(caplog):
    records = [_record(), _record(file_name="bad_cat.jpg", category_id=9), _record(annotations=[
        {"bbox": [-5, 0, 20, 20], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0}]),
        {"height": 3}]
    with pytest.raises(BadRecordError, match="bad_cat.jpg.*BAD_RECORD_POLICY 'skip'"):
        validate_dataset_dicts(records, RecordChecker(num_classes=3), "fatal", "toy")
    with caplog.at_level(logging.INFO, logger="segmentation_core.validation.records"):
        kept = validate_dataset_dicts(records, RecordChecker(num_classes=3), "skip", "toy")
    assert [r["file_name"] for r in kept] == ["img_7.jpg", "img_7.jpg"]
    assert kept[1]["annotations"][0]["bbox"] == [0, 0, 15, 20]
    summary = [r.message for r in caplog.records if r.message.startswith("Dataset toy")]
    assert summary == ["Dataset toy: 2 bad records of 4 skipped (category_out_of_range: 1, missing_field: 1); "
                       "repaired: box_clipped: 1"]
    with pytest.raises(ValueError, match="BAD_RECORD_POLICY"):
        validate_dataset_dicts(records, RecordChecker(), "ignore")


# -- SafeMapper ------------------------------------------------------------------------------
class _ToyMapper:
    is_train = True

    def __call__(self, rec):
        if rec["kind"] == "bad_image":
            raise ImageReadError(rec["file_name"], "unreadable_image", "corrupt")
        if rec["kind"] == "bad_size":
            raise SizeMismatchError("Mismatched image shape for " + rec["file_name"])
        if rec["kind"] == "bug":
            raise KeyError("a bug, not bad data")
        return {"i": rec["i"]}


def _toy_records(n, bad_every=0):
    kinds = ["ok"] * n
    if bad_every:
        for i in range(0, n, bad_every):
            kinds[i] = "bad_image" if (i // bad_every) % 2 == 0 else "bad_size"
    return [{"file_name": f"{i}.jpg", "i": i, "kind": k} for i, k in enumerate(kinds)]


def test_safe_mapper_fatal_skip_and_other_errors(caplog):
    recs = _toy_records(6, bad_every=3)
    fatal = SafeMapper(_ToyMapper(), "fatal")
    assert fatal(recs[1]) == {"i": 1}
    with pytest.raises(ImageReadError, match="0.jpg"):
        fatal(recs[0])
    skip = SafeMapper(_ToyMapper(), "skip", name="toy")
    with caplog.at_level(logging.WARNING, logger="segmentation_core.validation.safe_mapper"):
        outs = [skip(r) for r in recs]
    assert outs == [None, {"i": 1}, {"i": 2}, None, {"i": 4}, {"i": 5}]
    assert skip.counter.counts() == {"unreadable_image": 1, "size_mismatch": 1}
    assert sum("skipping bad record" in r.message for r in caplog.records) == 2
    assert skip.summary() == "toy (BAD_RECORD_POLICY=skip): 2 bad records skipped (size_mismatch: 1, unreadable_image: 1)"
    assert skip.is_train is True  # the wrapped mapper's attributes stay reachable
    # a bug is not bad data: never skipped
    with pytest.raises(KeyError, match="a bug"):
        skip({"file_name": "x", "i": 0, "kind": "bug"})
    with pytest.raises(ValueError, match="BAD_RECORD_POLICY"):
        SafeMapper(_ToyMapper(), "ignore")


def test_safe_mapper_is_fatal_in_evaluation_and_stops_on_a_broken_dataset():
    ev = SafeMapper(_ToyMapper(), "skip", is_train=False)
    assert ev.policy == "fatal"
    with pytest.raises(ImageReadError):
        ev(_toy_records(1, bad_every=1)[0])
    broken = SafeMapper(_ToyMapper(), "skip", max_consecutive=5)
    bad = [{"file_name": f"{i}.jpg", "i": i, "kind": "bad_image"} for i in range(5)]
    for r in bad[:4]:
        assert broken(r) is None
    with pytest.raises(RuntimeError, match="5 bad records in a row.*root folder"):
        broken(bad[4])


def test_safe_mapper_in_resumable_loader_with_workers_counts_across_processes(caplog):
    """The resumable train stream draws another record when SafeMapper returns None; the skip
    counts made in two worker processes are visible in the main process; the hook logs them."""
    recs = _toy_records(40, bad_every=4)  # 10 bad records
    mapper = SafeMapper(_ToyMapper(), "skip", name="toy-loader")
    loader = build_resumable_train_loader(recs, mapper, total_batch_size=8, seed=3, num_workers=2)
    seen = []
    for batch in loader:
        seen.extend(d["i"] for d in batch)
        if len(seen) >= 80:  # two epochs' worth: every bad record was drawn at least once
            break
    del loader
    assert len(seen) == 80 and all(recs[i]["kind"] == "ok" for i in seen)
    counts = mapper.counter.counts()
    assert set(counts) == {"unreadable_image", "size_mismatch"} and sum(counts.values()) >= 10

    hook = BadRecordSummaryHook(period=0)
    with caplog.at_level(logging.INFO, logger="segmentation_core.validation.safe_mapper"):
        hook.after_train()
    assert any(r.message.startswith("toy-loader (BAD_RECORD_POLICY=skip): ") and "unreadable_image" in r.message
               for r in caplog.records)


# detectron2 v0.6 retried with random.sample(<set>), a TypeError on Python >= 3.11; our install
# patches it (tools/install/install_detectron2.py)
def test_detectron2_map_dataset_retries_when_safe_mapper_skips():
    recs = _toy_records(8, bad_every=4)
    mapper = SafeMapper(_ToyMapper(), "skip", name="toy-mapdataset")
    loader = build_detection_train_loader(recs, mapper=mapper, total_batch_size=4, num_workers=0,
                                          aspect_ratio_grouping=False)
    seen = [d["i"] for _, batch in zip(range(4), loader) for d in batch]
    assert len(seen) == 16 and all(recs[i]["kind"] == "ok" for i in seen)


def test_counter_and_summary_format():
    c = BadRecordCounter(shared=False)
    c.add("bad_box")
    c.add("bad_box")
    c.add("no_such_reason")
    assert c.counts() == {"bad_box": 2, "other": 1} and c.total() == 3
    assert format_summary("X", {}, {}) == "X: 0 bad records skipped"
    assert format_summary("X", {"bad_box": 1}, {"box_clipped": 2}, 10) == \
        "X: 1 bad record of 10 skipped (bad_box: 1); repaired: box_clipped: 2"
    assert "other" in REASONS


def test_config_keys():
    cfg = get_cfg()
    assert image_reader_kwargs(cfg)["max_pixels"] == 100_000_000  # default, logged, without the keys
    add_validation_config(cfg)
    assert cfg.DATALOADER.BAD_RECORD_POLICY == "fatal" and cfg.INPUT.APPLY_EXIF_ORIENTATION is True
    cfg.INPUT.MAX_IMAGE_PIXELS = 5
    cfg.DATALOADER.BAD_RECORD_POLICY = "skip"
    add_validation_config(cfg)  # idempotent
    assert image_reader_kwargs(cfg) == {"max_pixels": 5, "apply_exif": True}
    assert bad_record_policy(cfg) == "skip"
    cfg.DATALOADER.BAD_RECORD_POLICY = "sometimes"
    with pytest.raises(ValueError, match="BAD_RECORD_POLICY"):
        bad_record_policy(cfg)

