"""Name -> dataset-mapper class, for ``cfg.INPUT.DATASET_MAPPER_NAME``.

``DATASET_MAPPER_REGISTRY`` is filled by whoever defines a mapper, under the names the
official configs use (``mask_former_semantic``, ``coco_panoptic_lsj``, ``referring``, ...):
``@register_mapper("name")``. The engine looks names up and imports no plugin: the plugins are
imported by :func:`segmentation_core.config.load_plugins` (entry-point group ``restr_d2.plugins``).

A mapper class whose attribute ``maps_test_sets`` is true is also used for the test sets
(``Trainer.build_test_loader``, built with ``is_train=False``); the others are training
mappers and the test sets go through detectron2's ``DatasetMapper``.
"""
import logging

from ..config.families import load_plugins
from ..registry import NamedRegistry

logger = logging.getLogger(__name__)

__all__ = [
    "DATASET_MAPPER_REGISTRY", "register_mapper", "get_mapper_class", "registered_mapper_names",
    "build_dataset_mapper",
]

DATASET_MAPPER_REGISTRY = NamedRegistry("DATASET_MAPPER")
DATASET_MAPPER_REGISTRY.__doc__ = """``INPUT.DATASET_MAPPER_NAME`` -> mapper class (``cls(cfg, is_train)``)."""


def register_mapper(name, target=None):
    """Register the mapper class ``target`` under ``name``; without ``target``, a decorator:
    ``@register_mapper("mask_former_semantic")``."""
    return DATASET_MAPPER_REGISTRY.register_as(name, target)


def registered_mapper_names():
    load_plugins()
    return DATASET_MAPPER_REGISTRY.names()


def get_mapper_class(name):
    load_plugins()
    if name not in DATASET_MAPPER_REGISTRY:
        raise KeyError(
            f"Unknown INPUT.DATASET_MAPPER_NAME '{name}'. Valid names: "
            f"{', '.join(registered_mapper_names())} (a plugin registers its mappers with "
            "segmentation_core.engine.register_mapper when it is imported)."
        )
    return DATASET_MAPPER_REGISTRY.get(name)


def build_dataset_mapper(cfg, is_train):
    """The mapper ``cfg.INPUT.DATASET_MAPPER_NAME`` names, built with ``from_config(cfg)``."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    cls = get_mapper_class(name)
    logger.info(f"Dataset mapper '{name}' -> {cls.__module__}.{cls.__name__} (is_train={is_train})")
    return cls(cfg, is_train)


def build_test_mapper(cfg):
    """The configured mapper when it declares ``maps_test_sets``, else ``None`` (detectron2's
    ``DatasetMapper``)."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if not name or not getattr(get_mapper_class(name), "maps_test_sets", False):
        return None
    return build_dataset_mapper(cfg, False)
