"""COCO instance AP for mask-classification outputs.

Differs from detectron2's ``COCOEvaluator`` in two ways: contiguous ids need not be
``0..K-1`` (on a panoptic dataset the thing classes keep their panoptic contiguous ids, e.g.
ADE20K's 100 things inside 0..149), and the COCOeval kernel is chosen explicitly
(``backend``: "pycocotools", the reference, or "faster_coco_eval"), never detectron2's
compiled ``COCOeval_opt``.
"""
import copy
import itertools
import json
import os

import numpy as np

from detectron2.evaluation import COCOEvaluator
from detectron2.utils.file_io import PathManager

__all__ = ["InstanceSegEvaluator", "coco_eval_class", "evaluate_predictions_on_coco"]

COCO_BACKENDS = ("pycocotools", "faster_coco_eval")


def coco_eval_class(backend):
    if backend == "pycocotools":
        from pycocotools.cocoeval import COCOeval

        return COCOeval
    if backend == "faster_coco_eval":
        try:
            from faster_coco_eval import COCOeval_faster
        except ImportError as e:
            raise ImportError(
                "EVAL.COCO_BACKEND='faster_coco_eval' needs `pip install faster-coco-eval`; "
                "or use 'pycocotools'"
            ) from e
        return COCOeval_faster
    raise ValueError(f"Unknown COCO AP backend {backend!r}; choose one of {COCO_BACKENDS}")


def evaluate_predictions_on_coco(coco_gt, coco_results, iou_type, backend="pycocotools", img_ids=None, max_dets=(1, 10, 100)):
    """Run COCOeval (``backend``) for ``iou_type`` "bbox" / "segm"; returns the evaluator."""
    if not coco_results:
        raise ValueError("evaluate_predictions_on_coco needs at least one prediction")
    if iou_type == "segm":
        # without a box, COCOeval uses the mask area for the small/medium/large split
        coco_results = copy.deepcopy(coco_results)
        for r in coco_results:
            r.pop("bbox", None)
    coco_dt = coco_gt.loadRes(coco_results)
    coco_eval = coco_eval_class(backend)(coco_gt, coco_dt, iou_type)
    coco_eval.params.maxDets = list(max_dets)
    if img_ids is not None:
        coco_eval.params.imgIds = img_ids
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    return coco_eval


class InstanceSegEvaluator(COCOEvaluator):
    """``COCOEvaluator`` with free contiguous-id remapping and an explicit COCOeval backend.

    Results: ``{"segm": {"AP", "AP50", "AP75", "APs", "APm", "APl", "AP-<class>"...}}``
    (and ``"bbox"`` when predictions carry non-zero boxes and ``tasks`` asks for it).
    """

    def __init__(self, dataset_name, tasks=None, distributed=True, output_dir=None, *, max_dets_per_image=None, backend="pycocotools"):
        coco_eval_class(backend)  # fail at construction if the backend is missing
        self._backend = backend
        super().__init__(
            dataset_name,
            tasks=tasks,
            distributed=distributed,
            output_dir=output_dir,
            use_fast_impl=False,
            max_dets_per_image=max_dets_per_image,
        )
        self._logger.info(f"[InstanceSegEvaluator] COCO AP kernel: {backend}")

    def _tasks_from_predictions(self, predictions):
        """"segm" always (mask-classification models predict masks, even when there are no
        predictions at all); "bbox" only when some predicted box is non-zero (Mask2Former's
        boxes are all zeros, and their AP would be a meaningless 0)."""
        tasks = {"segm"}
        if any(any(v != 0 for v in p.get("bbox", ())) for p in predictions):
            tasks.add("bbox")
        return sorted(tasks)

    def _eval_predictions(self, predictions, img_ids=None):
        coco_results = list(itertools.chain(*[x["instances"] for x in predictions]))
        tasks = self._tasks or self._tasks_from_predictions(coco_results)
        mapping = getattr(self._metadata, "thing_dataset_id_to_contiguous_id", None)
        if mapping is not None:
            reverse = {v: k for k, v in mapping.items()}
            for r in coco_results:
                if r["category_id"] not in reverse:
                    raise ValueError(
                        f"A prediction has contiguous class {r['category_id']}, which is not a "
                        f"thing class of '{self._metadata.name}' (thing contiguous ids: "
                        f"{sorted(reverse)})"
                    )
                r["category_id"] = reverse[r["category_id"]]
        if self._output_dir:
            path = os.path.join(self._output_dir, "coco_instances_results.json")
            self._logger.info(f"Saving results to {path}")
            with PathManager.open(path, "w") as f:
                f.write(json.dumps(coco_results))
        if not self._do_evaluation:
            return
        max_dets = self._max_dets_per_image if self._max_dets_per_image is not None else [1, 10, 100]
        for task in sorted(tasks):
            coco_eval = (
                evaluate_predictions_on_coco(
                    self._coco_api, coco_results, task, self._backend, img_ids, max_dets
                )
                if coco_results
                else None
            )
            self._results[task] = self._derive_coco_results(
                coco_eval, task, class_names=self._metadata.get("thing_classes")
            )
