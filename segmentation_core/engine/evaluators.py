"""Evaluators for a test set, chosen by NAME: its metadata ``evaluator_type``.

``EVALUATOR_REGISTRY`` maps an ``evaluator_type`` to a builder
``build(cfg, dataset_name, output_folder, tasks) -> list of DatasetEvaluator``; each plugin
registers the types it evaluates when it is imported (``@register_evaluator("referring")``),
and the core registers detectron2's own (``sem_seg``, ``cityscapes_sem_seg``,
``cityscapes_instance``). ``tasks`` says which outputs the model produces: the
meta-architecture's ``eval_tasks(cfg)`` when it defines one (MaskFormer reads
``MODEL.MASK_FORMER.TEST.*_ON``), else semantic only.
"""
import logging
from dataclasses import dataclass

from detectron2.data import MetadataCatalog
from detectron2.evaluation import (
    CityscapesInstanceEvaluator,
    CityscapesSemSegEvaluator,
    DatasetEvaluators,
    SemSegEvaluator,
)
from detectron2.modeling import META_ARCH_REGISTRY

from ..config.families import load_plugins
from ..registry import NamedRegistry

__all__ = ["EVALUATOR_REGISTRY", "EvalTasks", "build_evaluators", "eval_tasks_of", "register_evaluator"]

logger = logging.getLogger(__name__)

EVALUATOR_REGISTRY = NamedRegistry("EVALUATOR")
EVALUATOR_REGISTRY.__doc__ = """dataset ``evaluator_type`` -> ``build(cfg, dataset_name, output_folder, tasks)``."""


@dataclass(frozen=True)
class EvalTasks:
    """Which outputs a model produces at test time."""

    semantic: bool = True
    instance: bool = False
    panoptic: bool = False


def register_evaluator(evaluator_type, build=None):
    """Register ``build`` for datasets whose metadata ``evaluator_type`` is ``evaluator_type``;
    without ``build``, a decorator."""
    return EVALUATOR_REGISTRY.register_as(evaluator_type, build)


def eval_tasks_of(cfg) -> EvalTasks:
    """``eval_tasks(cfg)`` of the configured meta-architecture, or semantic only."""
    name = cfg.MODEL.META_ARCHITECTURE
    arch = META_ARCH_REGISTRY.get(name) if name in META_ARCH_REGISTRY else None
    tasks_fn = getattr(arch, "eval_tasks", None)
    return tasks_fn(cfg) if tasks_fn is not None else EvalTasks()


@register_evaluator("sem_seg")
def _semantic(cfg, dataset_name, output_folder, tasks):
    return [SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)] if tasks.semantic else []


@register_evaluator("cityscapes_sem_seg")
def _cityscapes_semantic(cfg, dataset_name, output_folder, tasks):
    return [CityscapesSemSegEvaluator(dataset_name)]


@register_evaluator("cityscapes_instance")
def _cityscapes_instance(cfg, dataset_name, output_folder, tasks):
    return [CityscapesInstanceEvaluator(dataset_name)]


def build_evaluators(cfg, dataset_name, output_folder):
    """The evaluator(s) of ``dataset_name`` (one, or ``DatasetEvaluators``)."""
    load_plugins()
    etype = MetadataCatalog.get(dataset_name).get("evaluator_type", None)
    tasks = eval_tasks_of(cfg)
    if etype not in EVALUATOR_REGISTRY:
        raise NotImplementedError(
            f"No evaluator for dataset '{dataset_name}' with evaluator_type={etype!r}; registered "
            f"types: {', '.join(EVALUATOR_REGISTRY.names())} (a plugin registers its own with "
            "segmentation_core.engine.evaluators.register_evaluator)"
        )
    evaluators = EVALUATOR_REGISTRY.get(etype)(cfg, dataset_name, output_folder, tasks)
    if not evaluators:
        raise NotImplementedError(
            f"No evaluator for dataset '{dataset_name}' with evaluator_type={etype!r} and "
            f"semantic/instance/panoptic = {tasks.semantic}/{tasks.instance}/{tasks.panoptic}"
        )
    logger.info(f"Evaluators for '{dataset_name}' ({etype}): {[type(e).__name__ for e in evaluators]}")
    return evaluators[0] if len(evaluators) == 1 else DatasetEvaluators(evaluators)
