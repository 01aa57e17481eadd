"""The one config entry point: ``build_cfg(config_file, opts)``.

Family-scoped defaults: the YAML decides its model family (:func:`detect_family`), and the
config starts from that family's defaults alone (detectron2's ``get_cfg()``, DeepLab's keys,
the family's ``add_*_config``, then the engine's keys it lacks). Keys of the other registered
families are then added where missing, family by family in name order, so every YAML's keys
are known. The result depends on the YAML, never on which plugin was imported or which
``add_*_config`` ran first.

The returned :class:`ProjectCfgNode` reads YAML safely (``yaml_loading``), resolves file paths
relative to the YAML, and refuses to merge a YAML of another family into it.
"""
import logging
import os
from typing import Dict, Iterable, List, Optional, Sequence, Type

import torch
from detectron2.config import CfgNode, get_cfg
from detectron2.projects.deeplab import add_deeplab_config

from ..acceleration import add_acceleration_config
from ..engine.config import add_engine_config
from ..validation import add_validation_config
from .families import ConfigFamily, ConfigFamilyError, detect_family, registered_families, yaml_value
from .safe_cfg import SafeCfgNode
from .yaml_loading import load_yaml_with_base

__all__ = ["ProjectCfgNode", "assemble_config", "build_cfg", "load_config", "config_tree", "get_config_file"]

logger = logging.getLogger(__name__)

_FAMILY = "__family__"          # root-node attribute: the family's name, "" for none, None: undecided
_PRISTINE = "__pristine_dump__"  # root-node attribute of an undecided config: its dump when built


def _add_core_keys(cfg: CfgNode) -> None:
    add_engine_config(cfg)
    add_validation_config(cfg)
    add_acceleration_config(cfg)


def _family_defaults(family: Optional[Type[ConfigFamily]]) -> CfgNode:
    cfg = get_cfg()
    add_deeplab_config(cfg)
    if family is not None:
        family.add_config(cfg)
    _add_core_keys(cfg)
    return cfg


def _add_missing(dst: CfgNode, src: CfgNode) -> None:
    for k, v in src.items():
        if k not in dst:
            dst[k] = v
        elif isinstance(v, CfgNode) and isinstance(dst[k], CfgNode):
            _add_missing(dst[k], v)


def _all_path_keys(families: Iterable[Type[ConfigFamily]]) -> List[str]:
    return sorted({k for f in families for k in f.path_keys})


_ASSEMBLED: Dict[tuple, "ProjectCfgNode"] = {}  # (family, families) -> template; handed out as clones


def assemble_config(family: Optional[Type[ConfigFamily]],
                    families: Optional[Sequence[Type[ConfigFamily]]] = None) -> "ProjectCfgNode":
    """``family``'s defaults plus the keys of every family in ``families`` (any order: they are
    added in name order), as a :class:`ProjectCfgNode` owned by ``family`` (``None``: no family,
    detectron2's and the engine's defaults for shared keys)."""
    families = tuple(sorted(registered_families() if families is None else families, key=lambda f: f.name()))
    key = (family, families)
    if key not in _ASSEMBLED:
        cfg = _family_defaults(family)
        for other in families:
            if other is not family:
                _add_missing(cfg, _family_defaults(other))
        _ASSEMBLED[key] = ProjectCfgNode(cfg)
    out = _ASSEMBLED[key].clone()
    out.__dict__[_FAMILY] = family.name() if family is not None else ""
    return out


def _tree_with_opts(tree: Dict, opts: Sequence) -> Dict:
    """A copy of ``tree`` with ``KEY VALUE`` overrides applied (values decoded as yacs does)."""
    import copy

    tree = copy.deepcopy(tree)
    for key, value in zip(list(opts)[0::2], list(opts)[1::2]):
        if not isinstance(key, str):
            continue
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        else:
            node[parts[-1]] = CfgNode._decode_cfg_value(value)
    return tree


def config_tree(config_file: str, opts: Sequence = ()) -> Dict:
    """The raw mapping of ``config_file`` (``_BASE_`` chain merged, read safely) with ``opts``
    applied: what family detection and the device rule look at."""
    return _tree_with_opts(load_yaml_with_base(config_file, path_keys=_all_path_keys(registered_families())),
                           opts)


def _describe(family: Optional[Type[ConfigFamily]], tree: Dict) -> str:
    arch = yaml_value(tree, "MODEL.META_ARCHITECTURE")
    if family is None:
        return f"no model family claims META_ARCHITECTURE {arch!r}: detectron2's and the engine's defaults"
    return f"model family {family.name()} (META_ARCHITECTURE {arch!r})"


def _resolve_device(cfg: CfgNode, explicit: Optional[str]) -> None:
    """``MODEL.DEVICE``: detectron2's default ``cuda`` becomes ``cpu`` on a machine without CUDA
    (logged); a ``cuda`` device the YAML or the command line asks for there is an error."""
    device = str(cfg.MODEL.DEVICE)
    if not device.startswith("cuda") or torch.cuda.is_available():
        return
    if explicit is not None:
        raise RuntimeError(f"MODEL.DEVICE is {device!r} (set in the config or on the command line) but "
                           "CUDA is not available on this machine; use MODEL.DEVICE cpu")
    cfg.MODEL.DEVICE = "cpu"
    logger.info(f"MODEL.DEVICE: detectron2's default {device!r} is not available here (no CUDA); using 'cpu'")


class ProjectCfgNode(SafeCfgNode):
    """detectron2's ``CfgNode`` that reads YAML safely and keeps one model family.

    ``merge_from_file`` of a YAML of another family than the one the config was built for is a
    :class:`ConfigFamilyError` (it would build a hybrid model). A config from ``build_cfg()``
    without a file has no family yet: its first ``merge_from_file`` (while nothing else was
    changed) gives it the file's family defaults first.
    """

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict:
        # allow_unsafe is ignored on purpose: nothing read from a config file runs code
        return load_yaml_with_base(filename, path_keys=_all_path_keys(registered_families()))

    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        tree = self.load_yaml_with_base(cfg_filename)
        family = detect_family(tree, source=cfg_filename)
        name = family.name() if family is not None else ""
        own = self.__dict__.get(_FAMILY)
        if own is None:  # built without a file: take the file's family defaults
            if family is not None:
                if self.dump() != self.__dict__.get(_PRISTINE):
                    raise ConfigFamilyError(
                        f"{cfg_filename} is a {name} config, but this config was changed before its first "
                        f"YAML was merged, so the {name} defaults cannot be applied under your changes. Build "
                        "it with build_cfg(config_file, opts) instead (opts: your changes as KEY VALUE pairs)")
                fresh = assemble_config(family)
                self.clear()
                self.update(fresh)
            # no family: the undecided config already holds detectron2's and the engine's defaults
            self.__dict__[_FAMILY] = name
            self.__dict__.pop(_PRISTINE, None)
            logger.info(f"{cfg_filename}: {_describe(family, tree)}")
        elif own != name and name:
            raise ConfigFamilyError(
                f"{cfg_filename} is a {name} config, but this config holds the {own or 'detectron2'} "
                "defaults: merging it would build a hybrid of two model families. Start from "
                f"build_cfg({cfg_filename!r})")
        super().merge_from_file(cfg_filename, allow_unsafe=False)
        explicit = yaml_value(tree, "MODEL.DEVICE")
        if explicit is not None or own is None:  # the file's device, or the fresh defaults' one
            _resolve_device(self, explicit)

    @property
    def model_family(self) -> Optional[str]:
        """The family this config was built for ("" for none, ``None`` before the first YAML)."""
        return self.__dict__.get(_FAMILY)


def build_cfg(config_file: Optional[str] = None, opts: Optional[Sequence] = None) -> ProjectCfgNode:
    """The config of ``config_file`` (its family's defaults, the file, then ``opts``), unfrozen.

    Unknown keys get a did-you-mean and wrong value types name the expected type (nothing is
    merged from a file or list with a problem). Without a file: every family's keys with no
    family's defaults yet; the first ``merge_from_file`` decides the family.
    """
    from ..config_checks import merge_from_file_checked, merge_from_list_checked

    opts = list(opts or [])
    if config_file is None:
        cfg = assemble_config(None)
        cfg.__dict__[_FAMILY] = None
        _resolve_device(cfg, None)
        cfg.__dict__[_PRISTINE] = cfg.dump()
        # opts change the config: a later merge_from_file then asks for build_cfg(file, opts)
        merge_from_list_checked(cfg, opts)
        _resolve_device(cfg, yaml_value(_tree_with_opts({}, opts), "MODEL.DEVICE"))
        return cfg
    tree = config_tree(config_file, opts)
    family = detect_family(tree, source=config_file)
    cfg = assemble_config(family)
    logger.info(f"{config_file}: {_describe(family, tree)}")
    merge_from_file_checked(cfg, config_file)
    merge_from_list_checked(cfg, opts)
    _resolve_device(cfg, yaml_value(tree, "MODEL.DEVICE"))
    return cfg


_CONFIGS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "configs")


def get_config_file(config_path: str) -> str:
    """Absolute path of ``configs/<config_path>`` of this project (like detectron2's
    ``model_zoo.get_config_file``), so code runs from any directory:
    ``build_cfg(get_config_file("shapes/restr_shapes.yaml"))``."""
    path = os.path.join(_CONFIGS_DIR, config_path)
    if not os.path.isfile(path):
        import difflib

        names = [os.path.relpath(os.path.join(d, f), _CONFIGS_DIR) for d, _, fs in os.walk(_CONFIGS_DIR)
                 for f in fs if f.endswith(".yaml")]
        close = difflib.get_close_matches(config_path, names, n=3, cutoff=0.6)
        raise FileNotFoundError(f"no config {config_path!r} in {_CONFIGS_DIR}"
                                + (f"; did you mean {' or '.join(close)}?" if close else ""))
    return path


def load_config(config_file: str, opts: Sequence = ()) -> ProjectCfgNode:
    """``build_cfg(config_file, opts)``, frozen."""
    cfg = build_cfg(config_file, opts)
    cfg.freeze()
    return cfg
