"""detectron2 configs whose ``merge_from_file`` never runs code.

detectron2's ``CfgNode.merge_from_file`` defaults to ``allow_unsafe=True`` and falls back to
``yaml.unsafe_load`` on a Python tag, so a downloaded config with
``!!python/object/apply:os.system [...]`` runs a command. :class:`SafeCfgNode` reads every file of
a ``_BASE_`` chain with :func:`~segmentation_core.config.yaml_loading.load_yaml_with_base` instead
(``allow_unsafe`` is accepted and has no effect). :func:`make_cfg_safe` turns a config from
``get_cfg()`` into one in place; :func:`safe_merge_from_file` is ``cfg.merge_from_file(path)``
for any detectron2 config.
"""
import os
from typing import Any, Dict

from detectron2.config import CfgNode

from .yaml_loading import load_yaml_with_base

__all__ = ["SafeCfgNode", "make_cfg_safe", "safe_merge_from_file"]


class SafeCfgNode(CfgNode):
    """detectron2 ``CfgNode`` whose YAML loading never constructs Python objects; its
    ``merge_from_file`` is detectron2's otherwise (config versions, upgrades)."""

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:
        return load_yaml_with_base(filename)


def make_cfg_safe(cfg: CfgNode) -> CfgNode:
    """Turn every node of a detectron2 config into a :class:`SafeCfgNode`, in place, and return
    it. Keys, values and the nodes' flags (``new_allowed``, frozen, deprecated and renamed keys)
    are untouched: only the class changes (the subclass adds no state)."""
    if not isinstance(cfg, CfgNode):
        raise TypeError(f"expected a detectron2 CfgNode (from get_cfg()), got {type(cfg).__name__}")
    stack = [cfg]
    while stack:
        node = stack.pop()
        if type(node) is CfgNode:
            # yacs' __setattr__ would store "__class__" as a config key
            object.__setattr__(node, "__class__", SafeCfgNode)
        elif not isinstance(node, SafeCfgNode):
            raise TypeError(
                f"config node of type {type(node).__module__}.{type(node).__qualname__} cannot be made "
                "safe; build the config with detectron2's get_cfg() / CfgNode")
        stack.extend(v for v in node.values() if isinstance(v, CfgNode))
    return cfg


def safe_merge_from_file(cfg: CfgNode, path: str) -> CfgNode:
    """``cfg.merge_from_file(path)`` with every file of the ``_BASE_`` chain read safely. ``cfg``
    becomes a :class:`SafeCfgNode` (see :func:`make_cfg_safe`), so later merges are safe too."""
    make_cfg_safe(cfg).merge_from_file(os.fspath(path))
    return cfg
