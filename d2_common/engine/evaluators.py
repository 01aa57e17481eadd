"""Evaluators for a test set, chosen from its metadata ``evaluator_type`` and the config."""
import logging

import torch

from detectron2.data import MetadataCatalog
from detectron2.evaluation import DatasetEvaluators, SemSegEvaluator

__all__ = ["build_evaluators"]

logger = logging.getLogger(__name__)

_PANOPTIC_TYPES = ("coco_panoptic_seg", "ade20k_panoptic_seg", "cityscapes_panoptic_seg", "mapillary_vistas_panoptic_seg")


def _mask_former_test_flags(cfg):
    """(semantic_on, instance_on, panoptic_on) of MaskFormer-family configs; semantic only else."""
    test = cfg.MODEL.get("MASK_FORMER", {}).get("TEST", None) if "MASK_FORMER" in cfg.MODEL else None
    if cfg.MODEL.META_ARCHITECTURE == "MaskFormer" and test is not None:
        return test.SEMANTIC_ON, test.INSTANCE_ON, test.PANOPTIC_ON
    return True, False, False


def build_evaluators(cfg, dataset_name, output_folder):
    from maskformer_d2.evaluation import InstanceSegEvaluator, PanopticQualityEvaluator

    meta = MetadataCatalog.get(dataset_name)
    etype = meta.get("evaluator_type", None)
    semantic_on, instance_on, panoptic_on = _mask_former_test_flags(cfg)
    sem = lambda: SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)  # noqa: E731
    inst = lambda: InstanceSegEvaluator(dataset_name, output_dir=output_folder, backend=cfg.EVAL.COCO_BACKEND)  # noqa: E731
    pan = lambda: PanopticQualityEvaluator(dataset_name, output_folder, backend=cfg.EVAL.PANOPTIC_BACKEND,  # noqa: E731
                                         bad_gt_policy=cfg.DATALOADER.get("BAD_RECORD_POLICY", "fatal"))
    evaluators = []
    if etype in ("sem_seg", "ade20k_panoptic_seg") and semantic_on:
        evaluators.append(sem())
    if etype == "coco":
        evaluators.append(inst())
    if etype in _PANOPTIC_TYPES and panoptic_on and etype != "cityscapes_panoptic_seg":
        evaluators.append(pan())
    if etype in ("coco_panoptic_seg", "mapillary_vistas_panoptic_seg", "ade20k_panoptic_seg") and instance_on:
        evaluators.append(inst())
    if etype in ("coco_panoptic_seg", "mapillary_vistas_panoptic_seg") and semantic_on:
        evaluators.append(sem())
    if etype in ("cityscapes_sem_seg", "cityscapes_instance", "cityscapes_panoptic_seg"):
        from detectron2.evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator

        if etype == "cityscapes_panoptic_seg" and panoptic_on:
            evaluators.append(pan())
        if etype == "cityscapes_sem_seg" or (etype == "cityscapes_panoptic_seg" and semantic_on):
            evaluators.append(CityscapesSemSegEvaluator(dataset_name))
        if etype == "cityscapes_instance" or (etype == "cityscapes_panoptic_seg" and instance_on):
            evaluators.append(CityscapesInstanceEvaluator(dataset_name))
    if etype == "referring":
        from restr_d2.evaluation import ReferringEvaluator

        evaluators.append(ReferringEvaluator(dataset_name, distributed=True, output_dir=output_folder,
                                             mask_threshold=cfg.MODEL.RESTR.TEST.MASK_THRESHOLD))
    if not evaluators:
        raise NotImplementedError(
            f"No evaluator for dataset '{dataset_name}' with evaluator_type={etype!r} and "
            f"semantic/instance/panoptic = {semantic_on}/{instance_on}/{panoptic_on}"
        )
    logger.info(f"Evaluators for '{dataset_name}' ({etype}): {[type(e).__name__ for e in evaluators]}")
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
