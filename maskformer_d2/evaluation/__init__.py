"""Evaluators of maskformer_d2, registered for the ``evaluator_type`` of the datasets they
evaluate (COCO instances, the panoptic datasets: semantic, instance and panoptic at once)."""
from detectron2.evaluation import CityscapesInstanceEvaluator, CityscapesSemSegEvaluator, SemSegEvaluator

from segmentation_core.engine.evaluators import register_evaluator

from .instance_evaluation import InstanceSegEvaluator  # noqa: F401
from .panoptic_evaluation import PanopticQualityEvaluator  # noqa: F401


def _instance(cfg, dataset_name, output_folder):
    return InstanceSegEvaluator(dataset_name, output_dir=output_folder, backend=cfg.EVAL.COCO_BACKEND)


def _panoptic(cfg, dataset_name, output_folder):
    return PanopticQualityEvaluator(dataset_name, output_folder, backend=cfg.EVAL.PANOPTIC_BACKEND,
                                    bad_gt_policy=cfg.DATALOADER.get("BAD_RECORD_POLICY", "fatal"))


def _semantic(cfg, dataset_name, output_folder):
    return SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)


@register_evaluator("coco")
def build_coco_instance_evaluators(cfg, dataset_name, output_folder, tasks):
    return [_instance(cfg, dataset_name, output_folder)]


@register_evaluator("ade20k_panoptic_seg")
def build_ade20k_panoptic_evaluators(cfg, dataset_name, output_folder, tasks):
    return ([_semantic(cfg, dataset_name, output_folder)] if tasks.semantic else []) + \
        ([_panoptic(cfg, dataset_name, output_folder)] if tasks.panoptic else []) + \
        ([_instance(cfg, dataset_name, output_folder)] if tasks.instance else [])


@register_evaluator("coco_panoptic_seg")
@register_evaluator("mapillary_vistas_panoptic_seg")
def build_panoptic_evaluators(cfg, dataset_name, output_folder, tasks):
    return ([_panoptic(cfg, dataset_name, output_folder)] if tasks.panoptic else []) + \
        ([_instance(cfg, dataset_name, output_folder)] if tasks.instance else []) + \
        ([_semantic(cfg, dataset_name, output_folder)] if tasks.semantic else [])


@register_evaluator("cityscapes_panoptic_seg")
def build_cityscapes_panoptic_evaluators(cfg, dataset_name, output_folder, tasks):
    # Cityscapes' own semantic and instance scripts, our PQ
    return ([_panoptic(cfg, dataset_name, output_folder)] if tasks.panoptic else []) + \
        ([CityscapesSemSegEvaluator(dataset_name)] if tasks.semantic else []) + \
        ([CityscapesInstanceEvaluator(dataset_name)] if tasks.instance else [])
