"""Name -> dataset-mapper class, for ``cfg.INPUT.DATASET_MAPPER_NAME``.

Both plugins register their mappers here under the names the official configs use
(``mask_former_semantic``, ``coco_panoptic_lsj``, ``referring``, ...). A name may also be
registered *lazily* as ``"package.module:ClassName"`` so that selecting it imports the plugin
that provides it.
"""
import importlib
import logging

logger = logging.getLogger(__name__)

__all__ = ["register_mapper", "get_mapper_class", "registered_mapper_names", "build_dataset_mapper"]

_MAPPERS = {}


def register_mapper(name, target=None):
    """Register ``target`` (a class, or ``"module:attr"``) under ``name``.

    Usable as a decorator: ``@register_mapper("mask_former_semantic")``.
    """

    def _do(obj):
        old = _MAPPERS.get(name)
        if old is not None and old is not obj and not isinstance(old, str):
            raise KeyError(f"Dataset mapper name '{name}' is already taken by {old!r}")
        _MAPPERS[name] = obj
        return obj

    if target is None:
        return _do
    return _do(target)


def registered_mapper_names():
    return sorted(_MAPPERS)


def get_mapper_class(name):
    if name not in _MAPPERS:
        raise KeyError(
            f"Unknown INPUT.DATASET_MAPPER_NAME '{name}'. Valid names: "
            f"{', '.join(registered_mapper_names())}."
        )
    target = _MAPPERS[name]
    if isinstance(target, str):
        module, attr = target.split(":")
        try:
            target = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ImportError(
                f"Dataset mapper '{name}' lives in {module}.{attr}, which cannot be imported: {e}"
            ) from e
        _MAPPERS[name] = target
    return target


def build_dataset_mapper(cfg, is_train):
    """The mapper ``cfg.INPUT.DATASET_MAPPER_NAME`` names, built with ``from_config(cfg)``."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    cls = get_mapper_class(name)
    logger.info(f"Dataset mapper '{name}' -> {cls.__module__}.{cls.__name__} (is_train={is_train})")
    return cls(cfg, is_train)


# Mappers of plugins that may not be imported yet.
register_mapper("referring", "restr_d2.data.dataset_mappers:ReferringDatasetMapper")
