"""Referring-segmentation metrics: overall IoU, mean IoU and precision@X."""
import copy
import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from detectron2.evaluation import DatasetEvaluator
from detectron2.utils import comm
from detectron2.utils.file_io import PathManager

__all__ = ["ReferringEvaluator", "mask_intersection_union", "referring_metrics"]

logger = logging.getLogger(__name__)

DEFAULT_IOU_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def mask_intersection_union(pred: torch.Tensor, gt: torch.Tensor):
    """(H, W) bool masks -> (I, U) pixel counts (Python ints)."""
    if pred.shape != gt.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and ground truth {tuple(gt.shape)} differ in size; "
            "both must be at the original image resolution"
        )
    pred, gt = pred.bool(), gt.bool()
    return int((pred & gt).sum()), int((pred | gt).sum())


def referring_metrics(
    intersections: Sequence[int],
    unions: Sequence[int],
    iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
) -> Dict[str, float]:
    """Metrics (in percent) from per-sample intersections and unions.

    * ``oIoU`` (overall / cumulative IoU, the official ReSTR number): 100 * sum(I) / sum(U);
    * ``mIoU``: 100 * mean over samples of I / U;
    * ``Prec@X``: 100 * fraction of samples with I / U >= X.

    Convention for samples whose union is empty (nothing referred in the GT *and* nothing
    predicted): their IoU is 1 (a correct "no object" answer), and they add 0 to both sums of
    ``oIoU``. A GT-empty sample with a non-empty prediction has I = 0, U = |pred|, IoU 0. If the
    whole set has sum(U) = 0, ``oIoU`` is 100.
    """
    I = np.asarray(intersections, dtype=np.int64)
    U = np.asarray(unions, dtype=np.int64)
    if I.shape != U.shape:
        raise ValueError("intersections and unions differ in length")
    n = int(I.size)
    res: Dict[str, float] = {"num_samples": float(n)}
    if n == 0:
        logger.warning("ReferringEvaluator received no predictions")
        return res
    iou = np.where(U > 0, I / np.maximum(U, 1), 1.0)
    total_u = int(U.sum())
    res["oIoU"] = 100.0 * float(I.sum()) / total_u if total_u > 0 else 100.0
    res["mIoU"] = 100.0 * float(iou.mean())
    for t in iou_thresholds:
        res[f"Prec@{t:g}"] = 100.0 * float((iou >= t).mean())
    return res


class ReferringEvaluator(DatasetEvaluator):
    """Evaluates ``ref_seg`` predictions against the referred object's mask.

    Per sample, the prediction ``ref_seg > mask_threshold`` and the ground truth
    ``gt_mask_orig`` (from the referring mapper in test mode), both at the original resolution,
    give I and U; ``evaluate`` gathers them from all workers (``comm.gather``) and returns
    ``{"referring": referring_metrics(...)}`` on the main process (see that function for the
    metrics and for the empty-mask conventions).
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        *,
        mask_threshold: float = 0.5,
        iou_thresholds: Sequence[float] = DEFAULT_IOU_THRESHOLDS,
    ):
        """
        Args:
            dataset_name: for logging only.
            distributed: gather results from all workers; if False evaluate only this one.
            output_dir: if given, per-sample I/U are written to ``referring_per_sample.json``.
            mask_threshold: probability threshold turning ``ref_seg`` into a mask.
            iou_thresholds: thresholds of ``Prec@X``.
        """
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._mask_threshold = float(mask_threshold)
        self._iou_thresholds = tuple(iou_thresholds)
        self._cpu_device = torch.device("cpu")
        self.reset()

    def reset(self):
        self._records: List[Dict] = []

    def process(self, inputs, outputs):
        for inp, out in zip(inputs, outputs):
            if "ref_seg" not in out:
                raise KeyError("model output has no 'ref_seg'; ReferringEvaluator needs a referring model")
            if "gt_mask_orig" not in inp:
                raise KeyError(
                    "input has no 'gt_mask_orig': build the test loader with the referring mapper "
                    "in test mode (INPUT.DATASET_MAPPER_NAME 'referring', is_train=False)"
                )
            pred = out["ref_seg"].to(self._cpu_device) > self._mask_threshold
            gt = torch.as_tensor(inp["gt_mask_orig"]).to(self._cpu_device)
            i, u = mask_intersection_union(pred, gt)
            rec = {"I": i, "U": u}
            for key in ("image_id", "ref_id", "sent_id"):
                if key in inp:
                    rec[key] = inp[key]
            self._records.append(rec)

    def evaluate(self):
        if self._distributed:
            comm.synchronize()
            records = list(itertools.chain(*comm.gather(self._records, dst=0)))
            if not comm.is_main_process():
                return {}
        else:
            records = self._records
        if self._output_dir:
            PathManager.mkdirs(self._output_dir)
            path = os.path.join(self._output_dir, "referring_per_sample.json")
            with PathManager.open(path, "w") as f:
                json.dump(records, f, default=str)
        metrics = referring_metrics(
            [r["I"] for r in records], [r["U"] for r in records], self._iou_thresholds
        )
        # percent, like every other evaluator; the unit is written out, since a poor model's
        # "oIoU 0.0123" reads like a fraction
        logger.info(f"Referring evaluation on {self._dataset_name} ({int(metrics['num_samples'])} sentences), "
                    "in percent: " + ", ".join(f"{k} {v:.2f}%" for k, v in metrics.items() if k != "num_samples"))
        return OrderedDict({"referring": copy.deepcopy(metrics)})
