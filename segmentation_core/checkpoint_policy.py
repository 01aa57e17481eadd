"""Which weights a model accepts, decided in one place.

* **complete** (``--eval-only``, ``DefaultPredictor``, ``ReferringPredictor``, ``demo/demo.py``,
  ``--resume``): the file covers the whole model. A missing, unexpected or mis-shaped tensor is a
  :class:`WeightsMismatchError` naming the counts, the first keys and, when the file looks like
  another model family's checkpoint, which family.
* **partial** (training started from ``MODEL.WEIGHTS``, e.g. an ImageNet backbone): accepted when
  every tensor of the file lands in the model, apart from the classifier of a pretrained
  backbone (:data:`PRETRAINED_CLASSIFIER_KEYS`, logged as ignored); one log line per module says
  what was loaded and what is fresh.
* **lenient** (``MODEL.WEIGHTS_STRICT False``): detectron2's behaviour (load what fits, warn),
  with a warning that says so.

Our meta-architectures call :func:`require_complete_weights` in their constructor, so a plain
``DetectionCheckpointer(model).load(path)`` (what detectron2's ``DefaultPredictor`` does) is
checked too; the Trainer switches the model to *partial* around its initial load with
:func:`weights_policy`.
"""
import contextlib
import logging
import re
from collections import OrderedDict
from typing import Iterable, List, Optional, Sequence, Tuple

from torch import nn

from .config.families import guess_checkpoint_family
from .config_checks import CheckpointShapeError, check_weights_file
from .safe_checkpoint import SafeDetectionCheckpointer, read_checkpoint_file

__all__ = [
    "PRETRAINED_CLASSIFIER_KEYS",
    "WeightsMismatchError",
    "check_loaded_weights",
    "load_weights_checked",
    "require_complete_weights",
    "weights_policy",
    "weights_strict_from_cfg",
]

logger = logging.getLogger(__name__)

POLICIES = ("complete", "partial", "lenient")
_POLICY_ATTR = "_weights_policy"
_FAMILY_ATTR = "_weights_family"
_SHOWN = 5

#: keys of ImageNet classifiers that backbone checkpoints carry and no segmentation model has
#: (after detectron2's name matching): torchvision ResNet's ``fc`` ("stem.fc" once converted to
#: detectron2 names), timm/Swin/ViT ``head`` and Swin's final ``norm``.
PRETRAINED_CLASSIFIER_KEYS = re.compile(r"^(stem\.fc|fc|head|norm|backbone\.head|backbone\.norm)\.(weight|bias)$")


class WeightsMismatchError(CheckpointShapeError):
    """Weights that do not cover the model (or do not land in it, for a partial load)."""


def _keys_line(kind: str, keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_SHOWN]) + (f", ... ({len(keys) - _SHOWN} more)" if len(keys) > _SHOWN else "")
    return f"{len(keys)} {kind}: {shown}"


def _module_summary(model_keys: Iterable[str], loaded: set) -> List[str]:
    """One line per top-level module (two levels for a partly loaded one): loaded / fresh counts."""
    groups: "OrderedDict[str, List[str]]" = OrderedDict()
    for k in model_keys:
        groups.setdefault(k.split(".")[0], []).append(k)
    lines = []
    for name, keys in groups.items():
        n = sum(k in loaded for k in keys)
        if 0 < n < len(keys):
            sub: "OrderedDict[str, List[str]]" = OrderedDict()
            for k in keys:
                sub.setdefault(".".join(k.split(".")[:2]), []).append(k)
            for subname, subkeys in sub.items():
                m = sum(k in loaded for k in subkeys)
                lines.append(f"{subname}: {m}/{len(subkeys)} tensors loaded" + ("" if m == len(subkeys) else
                             f", {len(subkeys) - m} fresh"))
        else:
            lines.append(f"{name}: " + (f"{n}/{len(keys)} tensors loaded" if n else f"fresh ({len(keys)} tensors)"))
    return lines


def check_loaded_weights(model: nn.Module, source: str, *, missing: Sequence[str], unexpected: Sequence[str],
                         incorrect_shapes: Sequence[Tuple[str, tuple, tuple]] = (), policy: str = "complete",
                         checkpoint_keys: Optional[Sequence[str]] = None) -> None:
    """Apply ``policy`` to the outcome of loading ``source`` into ``model`` (raise or log)."""
    if policy not in POLICIES:
        raise ValueError(f"weights policy {policy!r}; expected one of {POLICIES}")
    model = getattr(model, "module", model)
    missing, unexpected = list(missing), list(unexpected)
    shapes = [f"{k} (file {tuple(a)}, model {tuple(b)})" for k, a, b in incorrect_shapes]
    shape_keys = {k for k, _, _ in incorrect_shapes}
    missing = [k for k in missing if k not in shape_keys]  # detectron2 drops them before loading
    model_keys = list(model.state_dict().keys())
    if policy == "partial":
        ignored = [k for k in unexpected if PRETRAINED_CLASSIFIER_KEYS.match(k)]
        unexpected = [k for k in unexpected if k not in ignored]
        if ignored:
            logger.info(f"{source}: ignored the pretrained classifier {ignored} (no such module in a segmentation model)")
        if unexpected or shapes:
            problems = ([_keys_line("tensor(s) of the file have no place in the model", unexpected)] if unexpected else []) + \
                       ([_keys_line("tensor(s) of the file do not fit the model's shapes", shapes)] if shapes else [])
            raise WeightsMismatchError(
                f"{source}: a partial load (training from pretrained weights) needs every tensor of the file to "
                "land in the model, but " + "; ".join(problems) + _family_hint(model, checkpoint_keys) +
                ". Convert the file to this model's names (tools/convert_*), or set MODEL.WEIGHTS_STRICT False "
                "to load only what fits (logged)")
        loaded = set(model_keys) - set(missing) - shape_keys
        logger.info(f"{source}: partial load, {len(loaded)}/{len(model_keys)} tensors of the model loaded:\n  "
                    + "\n  ".join(_module_summary(model_keys, loaded)))
        return
    if not (missing or unexpected or shapes):
        return
    problems = [_keys_line(kind, keys) for kind, keys in (
        ("missing from the file", missing), ("unexpected in the file", unexpected), ("of the wrong shape", shapes)) if keys]
    text = (f"{source} does not cover the model ({type(model).__name__}, {len(model_keys)} tensors): "
            + "; ".join(problems) + _family_hint(model, checkpoint_keys))
    if policy == "lenient":
        logger.warning(text + ". MODEL.WEIGHTS_STRICT is False: the rest keeps its initialisation")
        return
    raise WeightsMismatchError(
        text + ". Evaluating or predicting with part of the model at its random initialisation gives "
        "meaningless results. Use the checkpoint trained with this config; or, knowingly, set "
        "MODEL.WEIGHTS_STRICT False")


def _family_hint(model: nn.Module, checkpoint_keys: Optional[Sequence[str]]) -> str:
    if not checkpoint_keys:
        return ""
    family = guess_checkpoint_family(checkpoint_keys)
    if family is None:
        return ""
    own = getattr(model, _FAMILY_ATTR, None) or guess_checkpoint_family(model.state_dict().keys())
    if own is not None and family == own:
        return f" (the file looks like a {family} checkpoint, as the model, but of another configuration)"
    return f" (the file looks like a {family} checkpoint; this model is {own or type(model).__name__})"


def _after_load(module: nn.Module, incompatible) -> None:
    policy = getattr(module, _POLICY_ATTR, "complete")
    if policy == "off":  # the caller checks itself, with more information (shapes, file keys)
        return
    missing = list(incompatible.missing_keys)
    check_loaded_weights(
        module, "the weights loaded (detectron2 drops tensors of the wrong shape before loading, with a "
        "warning above: they count as missing)", missing=missing, unexpected=incompatible.unexpected_keys,
        policy=policy, checkpoint_keys=[k for k in module.state_dict() if k not in missing]
        + list(incompatible.unexpected_keys))


def weights_strict_from_cfg(cfg) -> bool:
    """``MODEL.WEIGHTS_STRICT``; True (the safe side) for a config built without the engine's keys."""
    return bool(cfg.MODEL.get("WEIGHTS_STRICT", True))


def require_complete_weights(model: nn.Module, strict: bool = True, family: Optional[str] = None) -> nn.Module:
    """Make every ``model.load_state_dict`` (detectron2's checkpointer included) check the
    weights: complete (``strict``) or lenient, until :func:`weights_policy` changes it."""
    object.__setattr__(model, _POLICY_ATTR, "complete" if strict else "lenient")
    if family is not None:
        object.__setattr__(model, _FAMILY_ATTR, family)
    if not getattr(model, "_weights_policy_hooked", False):
        model.register_load_state_dict_post_hook(_after_load)
        object.__setattr__(model, "_weights_policy_hooked", True)
    if not strict:
        logger.warning(f"{type(model).__name__}: MODEL.WEIGHTS_STRICT is False: weights that do not cover the "
                       "model load with a warning instead of an error")
    return model


@contextlib.contextmanager
def weights_policy(model: nn.Module, policy: str):
    """Within the block, ``model``'s load hook applies ``policy`` ("complete", "partial",
    "lenient", or "off" when the caller checks the outcome itself). A lenient model stays lenient."""
    model = getattr(model, "module", model)
    before = getattr(model, _POLICY_ATTR, None)
    if before == "lenient" and policy != "off":
        policy = "lenient"
    object.__setattr__(model, _POLICY_ATTR, policy)
    try:
        yield policy
    finally:
        if before is None:
            object.__delattr__(model, _POLICY_ATTR)
        else:
            object.__setattr__(model, _POLICY_ATTR, before)


def load_weights_checked(model: nn.Module, path: str, *, policy: str = "complete", allow_shape_mismatch: bool = False,
                         checkpointer=None):
    """Load ``path`` like ``DetectionCheckpointer(model).load(path)`` (``.pkl`` name matching,
    "module." prefixes), then apply ``policy`` with the full picture (file keys, shapes) and log
    which file was loaded (and its iteration). ``allow_shape_mismatch``: tensors of another shape
    keep their initialisation (fine-tuning on another class count), listed in the log.

    Returns fvcore's incompatible-keys tuple.
    """

    if not path:
        if policy == "complete":
            raise WeightsMismatchError(
                "MODEL.WEIGHTS is empty: evaluating or predicting needs trained weights (random "
                "initialisation gives meaningless numbers). Set MODEL.WEIGHTS to a checkpoint")
        logger.info("MODEL.WEIGHTS is empty: the model starts from its random initialisation")
        return None
    check_weights_file(path)
    checkpointer = checkpointer if checkpointer is not None else SafeDetectionCheckpointer(model)
    # one reader, one error (CorruptCheckpointError), as in training
    checkpoint = read_checkpoint_file(checkpointer._load_file, path)
    file_keys = list(checkpoint.get("model", {}).keys()) if isinstance(checkpoint, dict) else []
    iteration = checkpoint.get("iteration") if isinstance(checkpoint, dict) else None
    with weights_policy(model, "off"):
        incompatible = checkpointer._load_model(checkpoint)
    shapes = list(incompatible.incorrect_shapes)
    if shapes and not allow_shape_mismatch:
        lines = [f"{k}: checkpoint {tuple(a)}, model {tuple(b)}" for k, a, b in shapes[:20]]
        raise CheckpointShapeError(
            f"{path}: {len(shapes)} tensor(s) do not fit the model:\n  " + "\n  ".join(lines)
            + "\nThe config (NUM_CLASSES, NUM_OBJECT_QUERIES, widths) differs from the "
            "checkpoint's. To fine-tune from it on purpose, load with "
            "allow_shape_mismatch=True: those tensors then keep their fresh initialisation.")
    if shapes:
        logger.warning(f"{path}: {len(shapes)} tensor(s) keep their initialisation (shape mismatch): "
                       + "; ".join(f"{k}: checkpoint {tuple(a)}, model {tuple(b)}" for k, a, b in shapes))
    missing = [k for k in incompatible.missing_keys if k not in {s[0] for s in shapes}]
    effective = getattr(getattr(model, "module", model), _POLICY_ATTR, policy)
    check_loaded_weights(model, path, missing=missing, unexpected=incompatible.unexpected_keys,
                         policy="lenient" if effective == "lenient" else policy, checkpoint_keys=file_keys)
    logger.info(f"loaded weights {path}" + (f" (iteration {iteration})" if iteration is not None else ""))
    return incompatible
