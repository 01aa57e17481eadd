"""Evaluators of restr_d2: ``ReferringEvaluator`` (oIoU, mIoU, Prec@X), registered for
``evaluator_type: referring``."""
from segmentation_core.engine.evaluators import register_evaluator

from .referring_evaluation import ReferringEvaluator, mask_intersection_union, referring_metrics  # noqa: F401


@register_evaluator("referring")
def build_referring_evaluators(cfg, dataset_name, output_folder, tasks):
    return [ReferringEvaluator(dataset_name, distributed=True, output_dir=output_folder,
                               mask_threshold=cfg.MODEL.RESTR.TEST.MASK_THRESHOLD)]
