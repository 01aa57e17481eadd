"""detectron2 ``Registry`` whose entries are registered under a name the registrant chooses.

Config values such as ``INPUT.DATASET_MAPPER_NAME: mask_former_semantic`` or a dataset's
``evaluator_type: coco_panoptic_seg`` are not class names, so ``Registry.register`` (which uses
``obj.__name__``) cannot file them.
"""
from typing import Any, Callable, List

from detectron2.utils.registry import Registry

__all__ = ["NamedRegistry"]


class NamedRegistry(Registry):
    """A ``Registry`` with :meth:`register_as`; lookups (``get``, ``in``) are detectron2's."""

    def register_as(self, name: str, obj: Any = None) -> Any:
        """Register ``obj`` under ``name``; without ``obj``, a decorator.

        Registering another object under a taken name is an error; the same class again (a
        module imported twice, e.g. by ``importlib.reload``) replaces the entry.
        """

        def _do(target: Any) -> Any:
            old = self._obj_map.get(name)
            if old is not None and old is not target and _qualname(old) != _qualname(target):
                raise KeyError(f"'{name}' is already registered in the {self._name} registry, "
                               f"by {_qualname(old)}; pick another name for {_qualname(target)}")
            self._obj_map[name] = target
            return target

        return _do if obj is None else _do(obj)

    def names(self) -> List[str]:
        return sorted(self._obj_map)


def _qualname(obj: Callable) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
