"""Model families as the config sees them: who owns a YAML, whose defaults it gets.

Each plugin registers one :class:`ConfigFamily` subclass per model family in
``CONFIG_FAMILY_REGISTRY`` when it is imported (like ``META_ARCH_REGISTRY``). The core never
imports a plugin: :func:`load_plugins` imports the packages installed under the entry-point
group ``restr_d2.plugins`` (``setup.py``), and a package imported by the user registers itself.

A family says:

* ``add_config(cfg)``: its keys and defaults (``set_default``: fills what is missing);
* ``matches(tree)``: whether a merged YAML mapping (``_BASE_`` chain resolved, command-line
  overrides applied) is one of its configs, decided from the YAML itself (meta-architecture,
  head names), never from a line we added to an official file;
* ``path_keys``: keys holding file paths, resolved relative to the YAML that sets them;
* ``checkpoint_key_prefixes``: state-dict key prefixes typical of its models, to name the
  family of a checkpoint that does not fit the model;
* ``num_classes_key``: the key of its models' class count, checked against the datasets'
  metadata (``None``: no fixed class count, e.g. binary referring segmentation).
"""
import importlib.metadata
import logging
from typing import Any, Dict, Iterable, List, Optional, Sequence, Type

from detectron2.utils.registry import Registry

__all__ = [
    "CONFIG_FAMILY_REGISTRY",
    "ConfigFamily",
    "ConfigFamilyError",
    "PLUGIN_ENTRY_POINT_GROUP",
    "detect_family",
    "guess_checkpoint_family",
    "load_plugins",
    "registered_families",
    "yaml_value",
]

logger = logging.getLogger(__name__)

CONFIG_FAMILY_REGISTRY = Registry("CONFIG_FAMILY")
CONFIG_FAMILY_REGISTRY.__doc__ = """Model families (``ConfigFamily`` subclasses), filled by the plugins."""

PLUGIN_ENTRY_POINT_GROUP = "restr_d2.plugins"

_MISSING = object()


class ConfigFamilyError(ValueError):
    """A YAML that no family, or several families, claim; or a merge that would mix families."""


def yaml_value(tree: Dict, key: str, default: Any = None) -> Any:
    """``tree["A"]["B"]`` for ``key="A.B"`` in a raw YAML mapping, or ``default``."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


class ConfigFamily:
    """One model family's config: register subclasses with ``@CONFIG_FAMILY_REGISTRY.register()``."""

    #: meta-architectures of this family (documentation, and the default ``matches``)
    meta_architectures: Sequence[str] = ()
    path_keys: Sequence[str] = ()
    checkpoint_key_prefixes: Sequence[str] = ()
    num_classes_key: Optional[str] = "MODEL.SEM_SEG_HEAD.NUM_CLASSES"

    @staticmethod
    def add_config(cfg) -> None:
        raise NotImplementedError

    @classmethod
    def matches(cls, tree: Dict) -> bool:
        return yaml_value(tree, "MODEL.META_ARCHITECTURE") in cls.meta_architectures

    @classmethod
    def name(cls) -> str:
        """The family's name: the class name without its "Config" suffix (``ReSTRConfig`` -> "ReSTR")."""
        n = cls.__name__
        return n[: -len("Config")] if n.endswith("Config") and len(n) > len("Config") else n


_plugins_loaded = False


def load_plugins() -> List[str]:
    """Import every package installed under the ``restr_d2.plugins`` entry-point group (once).

    Returns the names of the entry points loaded. Importing a plugin registers its families,
    models, datasets, mappers and evaluators.
    """
    global _plugins_loaded
    names = []
    if _plugins_loaded:
        return names
    for ep in importlib.metadata.entry_points(group=PLUGIN_ENTRY_POINT_GROUP):
        ep.load()
        names.append(ep.name)
    _plugins_loaded = True
    if names:
        logger.debug(f"plugins loaded: {names}")
    return names


def registered_families() -> List[Type[ConfigFamily]]:
    """The registered families, sorted by name (the order never depends on import order)."""
    load_plugins()
    return [CONFIG_FAMILY_REGISTRY.get(n) for n in sorted(name for name, _ in CONFIG_FAMILY_REGISTRY)]


def detect_family(tree: Dict, families: Optional[Iterable[Type[ConfigFamily]]] = None,
                  source: str = "the config") -> Optional[Type[ConfigFamily]]:
    """The one family whose ``matches`` accepts ``tree``; ``None`` when no family claims it
    (e.g. a detectron2 ``GeneralizedRCNN`` config: detectron2's defaults apply).

    Raises :class:`ConfigFamilyError` when several do.
    """
    families = list(registered_families() if families is None else families)
    claimed = [f for f in families if f.matches(tree)]
    if len(claimed) > 1:
        raise ConfigFamilyError(
            f"{source} is claimed by several model families ({', '.join(f.name() for f in claimed)}); "
            "their matches() rules overlap - fix the family registrations")
    return claimed[0] if claimed else None


def guess_checkpoint_family(keys: Iterable[str], families: Optional[Iterable[Type[ConfigFamily]]] = None
                            ) -> Optional[str]:
    """Name of the family most of whose typical key prefixes ``keys`` carry (more than half of
    the keys), or ``None``."""
    keys = list(keys)
    if not keys:
        return None
    best, best_share = None, 0.5
    for family in (registered_families() if families is None else families):
        prefixes = tuple(family.checkpoint_key_prefixes)
        if not prefixes:
            continue
        share = sum(k.startswith(prefixes) for k in keys) / len(keys)
        if share > best_share:
            best, best_share = family.name(), share
    return best
