"""Panoptic quality (PQ, SQ, RQ; all / things / stuff) in the COCO panoptic protocol.

Predictions are written as COCO panoptic PNG + json and scored by a PQ kernel chosen
explicitly: "hotcoco" (Rust, panopticapi-compatible ``pq_compute``) or "panopticapi" (the
reference implementation, e.g. from the ``panopticapi-lite`` wheel).

Ground truth is held to the same rule as in training: the ids of every ground-truth PNG must
be exactly the ids of its ``segments_info``. Both PQ kernels silently ignore a PNG segment that
``segments_info`` does not list (its pixels then count as void), which changes PQ without a
word. With ``bad_gt_policy="fatal"`` (``DATALOADER.BAD_RECORD_POLICY``, the default) such a
file is a :class:`BadRecordError` naming it and its ids; with ``"skip"`` its image is left out
of PQ, logged, and counted beside the metrics (``skipped_images``).
"""
import contextlib
import io
import itertools
import json
import logging
import os
import tempfile
from collections import OrderedDict

import numpy as np
from PIL import Image

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

from segmentation_core.data.panoptic_ids import id2rgb
from segmentation_core.validation import BadRecordError, check_panoptic_ids, read_image_checked
from segmentation_core.validation.records import POLICIES

__all__ = ["PanopticQualityEvaluator", "pq_compute_fn", "PANOPTIC_BACKENDS"]

logger = logging.getLogger(__name__)
PANOPTIC_BACKENDS = ("hotcoco", "panopticapi")


def pq_compute_fn(backend):
    """``pq_compute(gt_json, pred_json, gt_folder, pred_folder)`` of ``backend``."""
    if backend == "hotcoco":
        try:
            from hotcoco.panoptic import pq_compute
        except ImportError as e:
            raise ImportError("EVAL.PANOPTIC_BACKEND='hotcoco' needs `pip install hotcoco`") from e
        return pq_compute
    if backend == "panopticapi":
        try:
            from panopticapi.evaluation import pq_compute
        except ImportError as e:
            raise ImportError(
                "EVAL.PANOPTIC_BACKEND='panopticapi' needs panopticapi (e.g. `pip install "
                "panopticapi-lite`)"
            ) from e
        return pq_compute
    raise ValueError(f"Unknown panoptic backend {backend!r}; choose one of {PANOPTIC_BACKENDS}")


class PanopticQualityEvaluator(DatasetEvaluator):
    """PQ of ``{"panoptic_seg": (ids (H, W), segments_info)}`` outputs against the dataset's
    ``panoptic_json`` / ``panoptic_root``.

    ``segments_info`` entries need ``id``, ``category_id`` (contiguous) and ``isthing``; a
    ``segments_info`` of ``None`` means ids encode ``category * label_divisor + instance``
    (-1 = void), as detectron2's panoptic models produce.

    Results: ``{"panoptic_seg": {"PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st",
    "SQ_st", "RQ_st"}}``, in percent; with ``bad_gt_policy="skip"`` also ``skipped_images``
    (ground-truth images left out because their PNG ids do not match ``segments_info``).
    """

    def __init__(self, dataset_name, output_dir=None, *, backend="hotcoco", bad_gt_policy="fatal"):
        if bad_gt_policy not in POLICIES:
            raise ValueError(f"bad_gt_policy={bad_gt_policy!r} (DATALOADER.BAD_RECORD_POLICY); expected one of {POLICIES}")
        self._bad_gt_policy = bad_gt_policy
        self._pq_compute = pq_compute_fn(backend)
        self._backend = backend
        self._metadata = MetadataCatalog.get(dataset_name)
        self._thing_reverse = {v: k for k, v in self._metadata.thing_dataset_id_to_contiguous_id.items()}
        self._stuff_reverse = {v: k for k, v in self._metadata.stuff_dataset_id_to_contiguous_id.items()}
        self._output_dir = output_dir
        if output_dir is not None:
            PathManager.mkdirs(output_dir)
        logger.info(f"[PanopticQualityEvaluator] PQ kernel: {backend}")

    def reset(self):
        self._predictions = []

    def _to_dataset_id(self, seg):
        if seg.get("isthing", True) and seg["category_id"] in self._thing_reverse:
            seg["category_id"] = self._thing_reverse[seg["category_id"]]
        elif seg["category_id"] in self._stuff_reverse:
            seg["category_id"] = self._stuff_reverse[seg["category_id"]]
        else:
            raise ValueError(
                f"A predicted segment has contiguous category {seg['category_id']} "
                f"(isthing={seg.get('isthing')}), unknown to '{self._metadata.name}'"
            )
        return seg

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            panoptic_img, segments_info = out["panoptic_seg"]
            panoptic_img = np.asarray(panoptic_img.cpu() if hasattr(panoptic_img, "cpu") else panoptic_img)
            if segments_info is None:
                # ids are category * label_divisor + instance; rewrite to 1..N, 0 = void
                divisor = self._metadata.label_divisor
                segments_info, new = [], np.zeros_like(panoptic_img)
                for k, pan_id in enumerate(np.unique(panoptic_img)):
                    if pan_id == -1:
                        continue
                    cat = int(pan_id) // divisor
                    isthing = cat in self._thing_reverse
                    new[panoptic_img == pan_id] = len(segments_info) + 1
                    segments_info.append({"id": len(segments_info) + 1, "category_id": cat, "isthing": isthing})
                panoptic_img = new
            segments_info = [self._to_dataset_id(dict(s)) for s in segments_info]
            file_name = os.path.splitext(os.path.basename(inp["file_name"]))[0] + ".png"
            with io.BytesIO() as buf:
                Image.fromarray(id2rgb(panoptic_img)).save(buf, format="PNG")
                png = buf.getvalue()
            self._predictions.append(
                {"image_id": inp["image_id"], "file_name": file_name, "png_string": png, "segments_info": segments_info}
            )

    def _check_ground_truth(self, json_data, gt_folder, image_ids):
        """Ids of the evaluated images whose ground-truth PNG ids differ from their
        ``segments_info`` (empty with "fatal", which raises instead)."""
        bad = {}
        for ann in json_data["annotations"]:
            if ann["image_id"] not in image_ids:
                continue
            png = os.path.join(gt_folder, ann["file_name"])
            pan = read_image_checked(png, "RGB").astype(np.int64)
            try:
                check_panoptic_ids(pan[..., 0] + 256 * pan[..., 1] + 65536 * pan[..., 2], ann["segments_info"], png)
            except BadRecordError as e:
                bad[ann["image_id"]] = e
        if not bad:
            return {}
        shown = "\n  ".join(str(e) for e in list(bad.values())[:10])
        more = f"\n  (and {len(bad) - 10} more)" if len(bad) > 10 else ""
        if self._bad_gt_policy == "fatal":
            raise BadRecordError(
                None, "panoptic_id_mismatch",
                f"{len(bad)} of {len(image_ids)} ground-truth panoptic PNGs of '{self._metadata.name}' "
                f"do not match their segments_info ({self._metadata.panoptic_json}); PQ would silently "
                f"count those segments as void:\n  {shown}{more}\nFix the files, or set "
                "DATALOADER.BAD_RECORD_POLICY skip to leave these images out of PQ (counted).",
            )
        logger.warning(
            f"[PanopticQualityEvaluator] leaving {len(bad)} of {len(image_ids)} images out of PQ "
            f"(DATALOADER.BAD_RECORD_POLICY=skip): ground-truth PNG ids do not match segments_info:\n  {shown}{more}")
        return bad

    def evaluate(self):
        comm.synchronize()
        predictions = list(itertools.chain(*comm.gather(self._predictions)))
        if not comm.is_main_process():
            return None
        gt_json = PathManager.get_local_path(self._metadata.panoptic_json)
        gt_folder = PathManager.get_local_path(self._metadata.panoptic_root)
        with tempfile.TemporaryDirectory(prefix="panoptic_eval") as pred_dir:
            for p in predictions:
                with open(os.path.join(pred_dir, p["file_name"]), "wb") as f:
                    f.write(p.pop("png_string"))
            with open(gt_json) as f:
                json_data = json.load(f)
            bad = self._check_ground_truth(json_data, gt_folder, {p["image_id"] for p in predictions})
            if bad:
                # PQ over the other images only: both the ground truth and the predictions
                json_data["annotations"] = [a for a in json_data["annotations"] if a["image_id"] not in bad]
                json_data["images"] = [im for im in json_data["images"] if im["id"] not in bad]
                gt_json = os.path.join(pred_dir, "ground_truth_checked.json")
                with open(gt_json, "w") as f:
                    json.dump(json_data, f)
                predictions = [p for p in predictions if p["image_id"] not in bad]
            json_data["annotations"] = predictions
            pred_json = os.path.join(self._output_dir or pred_dir, "predictions.json")
            with PathManager.open(pred_json, "w") as f:
                f.write(json.dumps(json_data))
            with contextlib.redirect_stdout(io.StringIO()):
                pq_res = self._pq_compute(gt_json, pred_json, gt_folder, pred_dir)
        res = {}
        for key, name in (("All", ""), ("Things", "_th"), ("Stuff", "_st")):
            for m in ("pq", "sq", "rq"):
                res[m.upper() + name] = 100 * pq_res[key][m]
        if self._bad_gt_policy == "skip":
            res["skipped_images"] = float(len(bad))
        logger.info(f"Panoptic evaluation ({self._backend}) over {len(predictions)} images: "
                    + ", ".join(f"{k} {v:.3f}" for k, v in res.items()))
        return OrderedDict({"panoptic_seg": res})
