"""Checks of configurations and weights that turn silent misconfigurations and cryptic errors
into clear ones.

* :func:`merge_from_file_checked` / :func:`merge_from_list_checked`: every unknown key (with a
  "did you mean" from the full key paths) and every wrong value type (key, expected and given
  type) is reported at once, before anything is merged; then detectron2's own merge runs.
* :func:`check_datasets_registered`, :func:`check_num_classes`: the datasets exist and the
  model's ``NUM_CLASSES`` equals the number of classes in their metadata.
* :func:`check_weights_file`: ``MODEL.WEIGHTS`` exists (or is a URL / empty).
* :func:`check_checkpoint_shapes` / :func:`drop_mismatched_keys`: tensors whose shapes differ
  between a checkpoint and the model, and what to do about them; :func:`load_weights_checked`
  loads like ``DetectionCheckpointer`` but makes such tensors an error unless allowed.
* :func:`check_config`: all of the above that need only the config.

Typical ``setup()``::

    cfg = segmentation_core.config.load_config(args.config_file, args.opts)  # merges with the checks above
    check_config(cfg, check_weights=not args.resume)
"""
import difflib
import logging
import os
from typing import Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import yaml
from detectron2.config import CfgNode
from detectron2.data import DatasetCatalog, MetadataCatalog

from .config.families import registered_families
from .config.safe_cfg import safe_merge_from_file
from .config.yaml_loading import ConfigYAMLError, UnsafeYAMLError, load_yaml_with_base

__all__ = [
    "ConfigCheckError",
    "UnknownConfigKeyError",
    "NumClassesMismatchError",
    "CheckpointShapeError",
    "ShapeMismatch",
    "config_key_paths",
    "suggest_keys",
    "check_config_file",
    "merge_from_file_checked",
    "merge_from_list_checked",
    "check_datasets_registered",
    "check_num_classes",
    "check_weights_file",
    "check_checkpoint_shapes",
    "drop_mismatched_keys",
    "check_config",
]

logger = logging.getLogger(__name__)

_URL_PREFIXES = ("detectron2://", "http://", "https://", "catalog://", "manifold://", "s3://", "gs://")
_MAX_LISTED = 20


class ConfigCheckError(ValueError):
    """A configuration problem; the message lists every problem found and how to fix it."""


class UnknownConfigKeyError(ConfigCheckError, KeyError):
    """Unknown config keys (also a ``KeyError``, like yacs' "Non-existent config key")."""

    def __str__(self):  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class NumClassesMismatchError(ConfigCheckError):
    """The model's NUM_CLASSES differs from the dataset metadata."""


class CheckpointShapeError(ValueError):
    """Tensors of a checkpoint do not fit the model's shapes."""


# -- key paths and suggestions ------------------------------------------------------------------
def config_key_paths(cfg: CfgNode, prefix: str = "") -> Dict[str, bool]:
    """Every full key path of ``cfg`` -> whether it is a group (``CfgNode``)."""
    out = {}
    for k, v in cfg.items():
        path = f"{prefix}{k}"
        out[path] = isinstance(v, CfgNode)
        if isinstance(v, CfgNode):
            out.update(config_key_paths(v, path + "."))
    return out


def suggest_keys(key: str, candidates: Iterable[str], n: int = 3) -> List[str]:
    """Closest full key paths: a case-only difference first, then keys with the same last
    component, then ``difflib`` over the full paths, then over the last components."""
    candidates = list(candidates)
    upper = {c.upper(): c for c in candidates}
    if key.upper() in upper:
        return [upper[key.upper()]]
    last = key.rsplit(".", 1)[-1].upper()

    def ratio(c):
        return difflib.SequenceMatcher(None, key.upper(), c.upper()).ratio()

    same_last = [c for c in candidates if c.rsplit(".", 1)[-1].upper() == last]
    if same_last:
        # e.g. MODEL.NUM_CLASSES: every NUM_CLASSES of the config is a plausible target
        return sorted(same_last, key=ratio, reverse=True)[: max(n, 5)]
    close = difflib.get_close_matches(key.upper(), list(upper), n=n, cutoff=0.6)
    if close:
        best = ratio(upper[close[0]])
        return [upper[c] for c in close if ratio(upper[c]) >= best - 0.05]
    by_last: Dict[str, List[str]] = {}
    for c in candidates:
        by_last.setdefault(c.rsplit(".", 1)[-1].upper(), []).append(c)
    names = difflib.get_close_matches(last, list(by_last), n=n, cutoff=0.75)
    return sorted((c for name in names for c in by_last[name]), key=ratio, reverse=True)[:n]


def _unknown_message(full_key: str, is_group: bool, root: CfgNode) -> str:
    paths = config_key_paths(root)
    pool = [p for p, group in paths.items() if group == is_group] or list(paths)
    hints = suggest_keys(full_key, pool)
    msg = f"unknown key {full_key}"
    if hints:
        msg += " - did you mean " + " or ".join(hints) + "?"
    return msg


# -- value types (the rules of yacs' _check_and_coerce_cfg_value_type) ----------------------------
_VALID_TYPES = (tuple, list, str, int, float, bool, type(None))


def _type_name(value) -> str:
    return "a group of keys" if isinstance(value, (CfgNode, dict)) else type(value).__name__


def _type_problem(value, default, full_key: str) -> Optional[str]:
    if isinstance(default, CfgNode):
        if isinstance(value, dict):
            return None
        return (f"{full_key} is a group of keys, not a value; got {_type_name(value)} "
                f"{value!r}. Set its sub-keys instead ({full_key}.<KEY>)")
    if type(value) is type(default):
        return None
    if (value is None and type(default) in _VALID_TYPES) or (default is None and type(value) in _VALID_TYPES):
        return None
    if isinstance(value, (list, tuple)) and isinstance(default, (list, tuple)):
        return None
    shown = dict(value) if isinstance(value, dict) else value
    msg = (f"{full_key} expects {_type_name(default)} (default {default!r}), "
           f"got {_type_name(value)} {shown!r}")
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        msg += f"; write {float(value)!r}"
    elif isinstance(default, (list, tuple)) and not isinstance(value, (list, tuple)):
        msg += f"; write a list, e.g. [{value!r}]"
    elif isinstance(value, dict):
        msg += f"; {full_key} takes a single value, not sub-keys"
    elif isinstance(default, str) and not isinstance(value, str):
        msg += "; quote it to make it a string"
    elif isinstance(value, str) and not isinstance(default, str):
        msg += "; it was not parsed as a Python literal"
    return msg


def _renamed_message(root: CfgNode, full_key: str) -> str:
    new = root.__dict__["__renamed_keys__"][full_key]
    if isinstance(new, tuple):
        new, note = new
        return f"key {full_key} was renamed to {new} ({note})"
    return f"key {full_key} was renamed to {new}"


def _collect_problems(loaded: Mapping, node: CfgNode, root: CfgNode, keys: List[str], source: str,
                      problems: List[str]) -> None:
    for k, raw in loaded.items():
        full_key = ".".join(keys + [str(k)])
        value = node._decode_cfg_value(raw)
        if k not in node:
            if node.is_new_allowed():
                continue
            if root.key_is_deprecated(full_key):
                logger.warning(f"{source}: deprecated config key {full_key} is ignored")
                continue
            if root.key_is_renamed(full_key):
                problems.append(_renamed_message(root, full_key))
                continue
            problems.append(_unknown_message(full_key, isinstance(raw, dict), root))
            continue
        problem = _type_problem(value, node[k], full_key)
        if problem:
            problems.append(problem)
        elif isinstance(node[k], CfgNode) and isinstance(raw, dict):
            _collect_problems(raw, node[k], root, keys + [str(k)], source, problems)


def _raise_problems(problems: List[str], what: str) -> None:
    if not problems:
        return
    shown = problems[:_MAX_LISTED]
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    text = f"{len(problems)} problem(s) in {what}:\n  " + "\n  ".join(shown) + more
    if any("unknown key" in p or "renamed" in p for p in problems):
        raise UnknownConfigKeyError(
            text + "\n(keys of a model family exist only after its add_*_config(cfg): build the "
            "config with segmentation_core.config.build_cfg(config_file), which knows every installed family)"
        )
    raise ConfigCheckError(text)


def _missing_file_message(path: str, what: str, patterns: Tuple[str, ...]) -> str:
    msg = f"{what} {path} does not exist"
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(parent):
        names = [n for n in os.listdir(parent) if n.endswith(patterns)]
        close = difflib.get_close_matches(os.path.basename(path), names, n=3, cutoff=0.5)
        if close:
            msg += "; did you mean " + " or ".join(os.path.join(os.path.dirname(path), c) for c in close) + "?"
    else:
        msg += f" (nor its folder {parent})"
    return msg


# -- merging -------------------------------------------------------------------------------------
def check_config_file(cfg: CfgNode, path: str) -> bool:
    """Check every key and value type of a YAML config (and its ``_BASE_`` files) against
    ``cfg`` without merging. Returns False for an empty file (nothing to merge).

    Raises:
        FileNotFoundError: the file or a ``_BASE_`` file is missing (with a did-you-mean).
        UnknownConfigKeyError / ConfigCheckError: listing every problem found.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(_missing_file_message(path, "Config file", (".yaml", ".yml", ".py")))
    with open(path) as f:
        text = f.read()
    try:
        if yaml.safe_load(text) is None:
            logger.warning(f"config file {path} is empty: nothing to merge")
            return False
    except yaml.YAMLError:
        pass  # a tag or a syntax error: the loader below names it
    try:
        # read safely: a Python tag is an UnsafeYAMLError naming the file, line and tag
        loaded = load_yaml_with_base(path)
    except UnsafeYAMLError:
        raise
    except ConfigYAMLError as e:  # malformed YAML, not a mapping, a _BASE_ loop
        raise ConfigCheckError(str(e)) from None
    except (FileNotFoundError, OSError) as e:
        raise FileNotFoundError(f"{path}: cannot load it or a _BASE_ file it names: {e}") from e
    if not isinstance(loaded, dict):
        raise ConfigCheckError(f"{path} must contain a mapping of config keys, got {_type_name(loaded)}")
    version = loaded.get("VERSION")
    if version is not None and version != cfg.get("VERSION"):
        # an old-format file is upgraded key by key by detectron2; check the result instead
        logger.info(f"{path} has config VERSION {version}: key checks left to detectron2's upgrade")
        return True
    problems: List[str] = []
    _collect_problems(loaded, cfg, cfg, [], path, problems)
    _raise_problems(problems, path)
    return True


def merge_from_file_checked(cfg: CfgNode, path: str) -> CfgNode:
    """``cfg.merge_from_file(path)`` after :func:`check_config_file`: every unknown key (with
    a did-you-mean) and wrong value type of the file and its ``_BASE_`` files is reported at
    once, and nothing is merged then. YAML is loaded safely (``cfg`` becomes a ``SafeCfgNode``)."""
    if check_config_file(cfg, path):
        safe_merge_from_file(cfg, path)
    return cfg


def merge_from_list_checked(cfg: CfgNode, opts: Optional[Sequence]) -> CfgNode:
    """``cfg.merge_from_list(opts)`` after checking every key and value type."""
    if not opts:
        return cfg
    opts = list(opts)
    if len(opts) % 2:
        raise ConfigCheckError(
            f"command-line overrides must be KEY VALUE pairs; the last key {opts[-1]!r} has no value "
            f"(got {len(opts)} items: {opts})"
        )
    problems: List[str] = []
    for full_key, raw in zip(opts[0::2], opts[1::2]):
        if not isinstance(full_key, str):
            problems.append(f"{full_key!r} is not a key (KEY VALUE pairs expected)")
            continue
        if cfg.key_is_deprecated(full_key):
            continue
        if cfg.key_is_renamed(full_key):
            problems.append(_renamed_message(cfg, full_key))
            continue
        node, parts = cfg, full_key.split(".")
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), CfgNode):
                prefix = ".".join(parts[: i + 1])
                if part in node:
                    problems.append(f"{prefix} is a value, not a group; {full_key} does not exist")
                else:
                    problems.append(_unknown_message(full_key, False, cfg))
                node = None
                break
            node = node[part]
        if node is None:
            continue
        if parts[-1] not in node:
            # yacs' merge_from_list never adds keys, not even under new_allowed groups
            problems.append(_unknown_message(full_key, False, cfg))
            continue
        problem = _type_problem(cfg._decode_cfg_value(raw), node[parts[-1]], full_key)
        if problem:
            problems.append(problem)
    _raise_problems(problems, "the command-line overrides")
    cfg.merge_from_list(opts)
    return cfg


# -- datasets and classes ------------------------------------------------------------------------
def check_datasets_registered(names: Iterable[str]) -> None:
    """Every name is registered in ``DatasetCatalog`` (with suggestions otherwise)."""
    registered = DatasetCatalog.list()
    problems = []
    for name in names:
        if name not in registered:
            close = difflib.get_close_matches(name, registered, n=3, cutoff=0.6)
            hint = (" - did you mean " + " or ".join(close) + "?") if close else ""
            problems.append(f"dataset {name!r} is not registered{hint}")
    if problems:
        raise ConfigCheckError(
            "; ".join(problems) + " (datasets are registered by importing maskformer_d2 / "
            "restr_d2 / segmentation_core.data.shapes, or by your own register_* call)"
        )


# detectron2's own meta-architecture -> config key of its class count; the plugins' families
# name theirs (ConfigFamily.num_classes_key)
_DETECTRON2_NUM_CLASSES_KEYS = {
    "SemanticSegmentor": "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
    "GeneralizedRCNN": "MODEL.ROI_HEADS.NUM_CLASSES",
    "RetinaNet": "MODEL.RETINANET.NUM_CLASSES",
}
_NO_RULE = object()


def _num_classes_key(arch: str):
    """The class-count key of ``arch`` (``None``: no fixed count), or ``_NO_RULE``."""
    for family in registered_families():
        if arch in family.meta_architectures:
            return family.num_classes_key
    return _DETECTRON2_NUM_CLASSES_KEYS.get(arch, _NO_RULE)
_INSTANCE_EVALUATORS = ("coco", "lvis", "cityscapes_instance")


def _dataset_classes(name: str) -> Tuple[Optional[List[str]], str]:
    meta = MetadataCatalog.get(name)
    evaluator = meta.get("evaluator_type", None)
    if evaluator == "referring":
        return None, "referring"
    order = ("thing_classes", "stuff_classes") if evaluator in _INSTANCE_EVALUATORS else ("stuff_classes", "thing_classes")
    for key in order:
        classes = meta.get(key, None)
        if classes is not None:
            return list(classes), key
    return None, "none"


def check_num_classes(cfg: CfgNode, dataset_names: Optional[Sequence[str]] = None) -> None:
    """The model's class count (key chosen by ``MODEL.META_ARCHITECTURE``) equals the number
    of classes in each dataset's metadata: ``thing_classes`` for instance datasets,
    ``stuff_classes`` otherwise (all classes in the Mask2Former panoptic convention).
    Referring datasets and datasets whose metadata has no class list yet are skipped (logged).
    """
    arch = cfg.MODEL.META_ARCHITECTURE
    key = _num_classes_key(arch)
    if key is _NO_RULE:
        logger.info(f"check_num_classes: no class-count rule for MODEL.META_ARCHITECTURE={arch}")
        return
    if key is None:
        return
    node = cfg
    for part in key.split("."):
        node = node[part]
    num_classes = int(node)
    names = list(dataset_names if dataset_names is not None else list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
    check_datasets_registered(names)
    problems = []
    for name in names:
        classes, source = _dataset_classes(name)
        if classes is None:
            logger.info(f"check_num_classes: {name} has no class list in its metadata ({source}); not checked")
            continue
        if len(classes) != num_classes:
            problems.append(
                f"{key}={num_classes} but dataset {name!r} has {len(classes)} classes (metadata "
                f"{source}: {classes[:5]}{' ...' if len(classes) > 5 else ''})"
            )
    if problems:
        raise NumClassesMismatchError(
            "; ".join(problems) + f". Set {key} to the dataset's class count; a checkpoint trained "
            "with another count then needs its classifier weights dropped (check_checkpoint_shapes "
            "lists them)"
        )


# -- weights ---------------------------------------------------------------------------------------
def check_weights_file(path: str, key: str = "MODEL.WEIGHTS") -> None:
    """A local weights file must exist; "" (random init) and URLs are accepted."""
    if not path:
        logger.info(f"{key} is empty: the model starts from its random initialisation")
        return
    if path.startswith(_URL_PREFIXES):
        return
    if not os.path.isfile(path):
        raise FileNotFoundError(
            _missing_file_message(path, f"{key}: weights file", (".pth", ".pkl", ".pt", ".bin", ".safetensors"))
            + f". Set {key} to an existing checkpoint, a URL, or '' to train from scratch"
        )


class ShapeMismatch(NamedTuple):
    key: str
    checkpoint_shape: Tuple[int, ...]
    model_shape: Tuple[int, ...]


def _shape(value) -> Optional[Tuple[int, ...]]:
    shape = getattr(value, "shape", None)
    return tuple(int(s) for s in shape) if shape is not None else None


def _model_state(model) -> Dict:
    model = getattr(model, "module", model)  # DistributedDataParallel
    return model.state_dict() if hasattr(model, "state_dict") else dict(model)


def _checkpoint_state(checkpoint: Mapping) -> Dict:
    if "model" in checkpoint and isinstance(checkpoint["model"], Mapping):
        checkpoint = checkpoint["model"]
    state = dict(checkpoint)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_checkpoint_shapes(model, checkpoint: Mapping, *, raise_error: bool = True,
                            name: str = "checkpoint") -> List[ShapeMismatch]:
    """Tensors present in both the model and the checkpoint whose shapes differ.

    Args:
        model: an ``nn.Module`` (or DDP-wrapped) or a state dict.
        checkpoint: a state dict (torch tensors or numpy arrays), or a detectron2 checkpoint
            dict with a "model" entry; a "module." prefix on every key is ignored.
        raise_error: raise :class:`CheckpointShapeError` listing them (and what to do).
    """
    model_state = _model_state(model)
    ckpt_state = _checkpoint_state(checkpoint)
    mismatches = []
    for k, v in ckpt_state.items():
        if k in model_state:
            a, b = _shape(v), _shape(model_state[k])
            if a is not None and b is not None and a != b:
                mismatches.append(ShapeMismatch(k, a, b))
    if mismatches and raise_error:
        lines = [f"{m.key}: checkpoint {m.checkpoint_shape}, model {m.model_shape}" for m in mismatches[:_MAX_LISTED]]
        if len(mismatches) > _MAX_LISTED:
            lines.append(f"... and {len(mismatches) - _MAX_LISTED} more")
        raise CheckpointShapeError(
            f"{name}: {len(mismatches)} tensor(s) do not fit the model:\n  " + "\n  ".join(lines)
            + "\nTo fine-tune with another number of classes (or queries), drop these keys so they "
            "keep their fresh initialisation: state_dict = drop_mismatched_keys(model, state_dict) "
            "(detectron2's DetectionCheckpointer also skips them, with a warning). Otherwise the "
            "config (NUM_CLASSES, NUM_OBJECT_QUERIES, widths, depths) differs from the one the "
            "checkpoint was trained with."
        )
    return mismatches


def drop_mismatched_keys(model, checkpoint: Mapping) -> Dict:
    """The checkpoint's state dict without the tensors whose shapes differ from the model's
    (logged), e.g. the classifier when fine-tuning on another dataset."""
    state = _checkpoint_state(checkpoint)
    bad = check_checkpoint_shapes(model, state, raise_error=False)
    for m in bad:
        logger.warning(f"dropping {m.key} from the checkpoint: shape {m.checkpoint_shape} vs model {m.model_shape}")
    drop = {m.key for m in bad}
    return {k: v for k, v in state.items() if k not in drop}


# -- all config-only checks ------------------------------------------------------------------------
def check_config(cfg: CfgNode, *, check_weights: bool = True) -> None:
    """Datasets registered, NUM_CLASSES vs metadata, MODEL.WEIGHTS exists (unless
    ``check_weights=False``, e.g. with ``--resume``, where the last checkpoint of OUTPUT_DIR
    takes precedence), validation keys valid. Call after merging (train_net.setup)."""
    check_datasets_registered(list(cfg.DATASETS.TRAIN) + list(cfg.DATASETS.TEST))
    check_num_classes(cfg)
    if check_weights:
        check_weights_file(cfg.MODEL.WEIGHTS)
    choices = {
        ("DATALOADER", "BAD_RECORD_POLICY"): ("fatal", "skip"),
        ("DATALOADER", "DEGENERATE_POLYGONS"): ("drop", "reject"),
    }
    for (node, key), allowed in choices.items():
        if key in cfg[node] and cfg[node][key] not in allowed:
            raise ConfigCheckError(f"{node}.{key}={cfg[node][key]!r}; expected one of {allowed}")
    if "MAX_IMAGE_PIXELS" in cfg.INPUT and cfg.INPUT.MAX_IMAGE_PIXELS < 0:
        raise ConfigCheckError(f"INPUT.MAX_IMAGE_PIXELS={cfg.INPUT.MAX_IMAGE_PIXELS}; use a positive limit or 0 for none")
    check_inference_dtype_supported(cfg)


def check_inference_dtype_supported(cfg: CfgNode) -> None:
    """``MODEL.INFERENCE_DTYPE`` other than float32 needs a meta-architecture that reads it (an
    ``inference_precision`` argument: ours); detectron2's own would silently run float32."""
    import inspect

    from detectron2.modeling import META_ARCH_REGISTRY

    dtype = cfg.MODEL.get("INFERENCE_DTYPE", "float32")
    arch = cfg.MODEL.META_ARCHITECTURE
    if dtype == "float32" or arch not in META_ARCH_REGISTRY:
        return  # an unregistered name fails in build_model with detectron2's own message
    if "inference_precision" not in inspect.signature(META_ARCH_REGISTRY.get(arch).__init__).parameters:
        raise ConfigCheckError(
            f"MODEL.INFERENCE_DTYPE={dtype!r} is read by MaskFormer, Segmenter and ReSTR, not by "
            f"MODEL.META_ARCHITECTURE={arch!r}, which would run float32: set MODEL.INFERENCE_DTYPE float32")
