"""YAML configs loaded without ever constructing Python objects.

detectron2's ``CfgNode.merge_from_file`` (and fvcore's ``load_yaml_with_base`` with
``allow_unsafe=True``) fall back to ``yaml.unsafe_load`` when a file has a tag the safe loader
does not know, so a downloaded config with ``!!python/object/apply:os.system [...]`` runs a
command. Here every file of a ``_BASE_`` chain goes through a ``yaml.SafeLoader`` whose unknown
tags are an :class:`UnsafeYAMLError` naming the file, line and tag; none of the official or
project configs needs one.

* :func:`load_yaml_with_base`: fvcore's ``_BASE_`` semantics (paths relative to the including
  file, a list of bases merged in order, the file's keys override its bases), safely.
* :class:`SafeCfgNode`: a detectron2 ``CfgNode`` whose ``load_yaml_with_base`` is the one above,
  so its ``merge_from_file`` (version upgrade included) is safe whatever ``allow_unsafe`` says.
* :func:`make_cfg_safe` turns a config from ``get_cfg()`` into one (in place, every node; keys,
  values and ``new_allowed`` / deprecated / renamed flags unchanged);
  :func:`safe_merge_from_file` is ``cfg.merge_from_file(path)`` for any detectron2 config.
"""
import logging
import os
from typing import Any, Dict, List, Optional

import yaml
from detectron2.config import CfgNode
from detectron2.utils.file_io import PathManager

__all__ = [
    "UnsafeYAMLError",
    "SafeConfigLoader",
    "load_yaml_file",
    "load_yaml_with_base",
    "SafeCfgNode",
    "make_cfg_safe",
    "safe_merge_from_file",
]

logger = logging.getLogger(__name__)

BASE_KEY = "_BASE_"
_YAML_TAG_PREFIX = "tag:yaml.org,2002:"


class UnsafeYAMLError(ValueError):
    """A YAML file holds a tag that would construct a Python object (or any tag the safe loader
    does not know). Not a ``yaml.YAMLError``: the file is well-formed, it is refused."""

    def __init__(self, path: str, line: int, column: int, tag: str):
        self.path, self.line, self.column, self.tag = path, line, column, tag
        shown = "!!" + tag[len(_YAML_TAG_PREFIX):] if tag.startswith(_YAML_TAG_PREFIX) else tag
        kind = "a Python tag" if shown.startswith("!!python/") else "an unknown tag"
        super().__init__(
            f"{path}, line {line}, column {column}: {kind} {shown} is refused. Python tags make "
            "the YAML loader build Python objects or call functions (a downloaded config could run "
            "commands), so configs are read with a safe loader: write the value as a plain number, "
            "string, list or mapping instead"
        )

    def __reduce__(self):  # picklable across processes (detectron2 launch)
        return type(self), (self.path, self.line, self.column, self.tag)


class SafeConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose unknown tags (``!!python/...`` among them) raise
    :class:`UnsafeYAMLError` with the position, instead of ``ConstructorError``."""

    source: str = "<yaml>"

    def construct_undefined(self, node):
        mark = node.start_mark
        raise UnsafeYAMLError(self.source, mark.line + 1, mark.column + 1, node.tag)


SafeConfigLoader.add_constructor(None, SafeConfigLoader.construct_undefined)


def load_yaml_file(path: str) -> Any:
    """One YAML document of ``path`` (local file or anything ``PathManager`` opens), safely.
    An empty document is ``None``."""
    with PathManager.open(path, "r") as f:
        loader = SafeConfigLoader(f)
        loader.source = path
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()


def _merge_into(override: Dict, base: Dict, path: str) -> None:
    """``override`` into ``base`` in place; nested mappings are merged key by key."""
    for k, v in override.items():
        if isinstance(v, dict) and k in base:
            if not isinstance(base[k], dict):
                raise ValueError(f"{path}: key {k!r} is a mapping, but a _BASE_ file gives it the value {base[k]!r}")
            _merge_into(v, base[k], path)
        else:
            base[k] = v


def _base_path(base: str, including_file: str) -> str:
    if base.startswith("~"):
        base = os.path.expanduser(base)
    if not base.startswith(("/", "https://", "http://")):
        # relative to the including file, as fvcore does
        base = os.path.join(os.path.dirname(including_file), base)
    return base


def load_yaml_with_base(path: str, _chain: Optional[List[str]] = None) -> Any:
    """The mapping of ``path`` merged over its ``_BASE_`` file(s), every file loaded safely
    (fvcore's ``CfgNode.load_yaml_with_base`` semantics; a ``_BASE_`` loop is an error).

    Raises:
        UnsafeYAMLError: a Python (or unknown) tag, with file, line and tag.
        yaml.YAMLError: malformed YAML.
        FileNotFoundError: a missing file of the chain.
        ValueError: a ``_BASE_`` loop, or a mapping key given a plain value by a base.
    """
    path = os.fspath(path)
    chain = list(_chain or [])
    key = os.path.abspath(path) if "://" not in path else path
    if key in chain:
        raise ValueError("_BASE_ chain loops: " + " -> ".join(chain + [key]))
    chain.append(key)
    loaded = load_yaml_file(path)
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict) or BASE_KEY not in loaded:
        return loaded
    bases = loaded.pop(BASE_KEY)
    merged: Dict = {}
    for base in bases if isinstance(bases, list) else [bases]:
        if not isinstance(base, str):
            raise ValueError(f"{path}: {BASE_KEY} must be a file name or a list of them, got {base!r}")
        base_cfg = load_yaml_with_base(_base_path(base, path), chain)
        if not isinstance(base_cfg, dict):
            raise ValueError(f"{path}: its {BASE_KEY} file {base} does not hold a mapping")
        _merge_into(base_cfg, merged, path)
    _merge_into(loaded, merged, path)
    return merged


class SafeCfgNode(CfgNode):
    """detectron2 ``CfgNode`` whose YAML loading never constructs Python objects.

    ``merge_from_file(path)`` is detectron2's (config versions, upgrades), with
    :func:`load_yaml_with_base`; its ``allow_unsafe`` argument is accepted for compatibility
    and has no effect: Python tags are always refused.
    """

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:
        loaded = load_yaml_with_base(filename)
        if not isinstance(loaded, dict):
            raise ValueError(f"{filename} must hold a mapping of config keys, got {type(loaded).__name__}")
        return loaded


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
                "safe; build the config with detectron2's get_cfg() / CfgNode"
            )
        stack.extend(v for v in node.values() if isinstance(v, CfgNode))
    return cfg


def safe_merge_from_file(cfg: CfgNode, path: str) -> CfgNode:
    """``cfg.merge_from_file(path)`` with every file of the ``_BASE_`` chain loaded safely.
    ``cfg`` becomes a :class:`SafeCfgNode` (see :func:`make_cfg_safe`), so later merges are
    safe too."""
    make_cfg_safe(cfg).merge_from_file(os.fspath(path))
    return cfg
