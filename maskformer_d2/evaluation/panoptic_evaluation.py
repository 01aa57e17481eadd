"""Panoptic quality (PQ, SQ, RQ; all / things / stuff) in the COCO panoptic protocol.

Predictions are written as COCO panoptic PNG + json and scored by a PQ kernel chosen
explicitly: "hotcoco" (Rust, panopticapi-compatible ``pq_compute``) or "panopticapi" (the
reference implementation, e.g. from the ``panopticapi-lite`` wheel).
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

from d2_common.data.panoptic_ids import id2rgb

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
    "SQ_st", "RQ_st"}}``, in percent.
    """

    def __init__(self, dataset_name, output_dir=None, *, backend="hotcoco"):
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
        logger.info(f"Panoptic evaluation ({self._backend}): " + ", ".join(f"{k} {v:.3f}" for k, v in res.items()))
        return OrderedDict({"panoptic_seg": res})
