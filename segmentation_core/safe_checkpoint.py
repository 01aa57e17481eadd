"""Checkpoint files read without running code, and written as ``.safetensors`` on request.

:func:`load_checkpoint_file` is what detectron2's ``DetectionCheckpointer._load_file`` does, by
extension, with every pickle read safely:

* ``.pkl`` (detectron2 / Detectron model zoo: dicts of NumPy arrays) through
  :class:`~segmentation_core.safe_pickle.RestrictedUnpickler` (Python 2 ``str`` as latin-1), then the
  same model-zoo / Caffe2 handling as detectron2;
* ``.safetensors``: tensors only by construction; a ``detectron2`` metadata entry (JSON)
  carries the checkpoint's other plain entries (``__author__``, ``matching_heuristics``, ...);
* ``.pyth`` (pycls) and everything else (``.pth``, ``.pt``, ``.bin``) with
  ``torch.load(weights_only=True)``, explicitly, whatever torch's default.

:class:`SafeDetectionCheckpointer` uses it. detectron2's own ``DefaultPredictor`` /
``DefaultTrainer`` construct a plain ``DetectionCheckpointer`` and load ``MODEL.WEIGHTS`` before
any of our code runs, so :func:`install_safe_checkpoint_loading` (called when ``segmentation_core`` is
imported, i.e. by ``import maskformer_d2`` / ``import restr_d2``) sets the same method on
``DetectionCheckpointer`` itself: every detectron2 checkpointer in the process reads files
safely. It replaces one method and nothing else; the file types that load are unchanged except
that a pickle needing a non-data global is refused (``UnsafePickleError``).

:func:`save_checkpoint` writes ``{"model": state_dict, ...}`` as ``.safetensors``, ``.pkl``
(NumPy arrays, the detectron2 model-zoo layout) or ``torch.save`` for any other extension.
"""
import json
import logging
import os
from typing import Any, Dict, Mapping

from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager

from .safe_pickle import UnsafePickleError, safe_pickle_load, torch_load_weights_only

__all__ = [
    "UnsafePickleError",
    "SAFETENSORS_METADATA_KEY",
    "load_checkpoint_file",
    "load_safetensors_checkpoint",
    "save_checkpoint",
    "SafeDetectionCheckpointer",
    "install_safe_checkpoint_loading",
    "CorruptCheckpointError",
    "read_checkpoint_file",
]

logger = logging.getLogger(__name__)

# safetensors metadata is str -> str; the checkpoint's non-tensor entries are one JSON object
SAFETENSORS_METADATA_KEY = "detectron2"


class CorruptCheckpointError(RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, zero bytes, not a checkpoint)."""

    def __init__(self, path, reason):
        super().__init__(
            f"checkpoint '{path}' is corrupt or truncated and cannot be loaded ({reason}). "
            "If training was killed while writing it, resume from an earlier checkpoint: "
            "point 'last_checkpoint' in the output directory at it, or pass it as MODEL.WEIGHTS."
        )
        self.path = path


def read_checkpoint_file(load_file, filename):
    """``load_file(filename)`` (a checkpointer's ``_load_file``), with a damaged file reported as
    :class:`CorruptCheckpointError` naming it: the one rule for training, ``--resume``,
    ``--eval-only`` and the predictors. ``.pkl`` files (detectron2 / Detectron model-zoo
    pickles) keep their own errors."""
    if filename.endswith(".pkl"):
        return load_file(filename)
    try:
        return load_file(filename)
    except (CorruptCheckpointError, UnsafePickleError):
        raise  # an unsafe file names the refused global; calling it corrupt would hide that
    except Exception as e:  # torch raises several types for a damaged zip/pickle
        raise CorruptCheckpointError(filename, f"{type(e).__name__}: {e}") from e


def _load_pkl(filename: str, log: logging.Logger) -> Dict[str, Any]:
    with PathManager.open(filename, "rb") as f:
        data = safe_pickle_load(f, encoding="latin1", source=filename)
    if not isinstance(data, dict):
        raise ValueError(f"{filename}: a .pkl checkpoint must hold a dict, got {type(data).__name__}")
    if "model" in data and "__author__" in data:
        # detectron2 model-zoo format
        log.info(f"Reading a file from '{data['__author__']}'")
        return data
    # Caffe2 / Detectron model zoo: detection models keep their weights under "blobs"
    if "blobs" in data:
        data = data["blobs"]
    data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
    return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}


def load_safetensors_checkpoint(filename: str) -> Dict[str, Any]:
    """``{"model": {name: tensor}, **extras}`` of a ``.safetensors`` file (on CPU); ``extras``
    come from the JSON metadata entry written by :func:`save_checkpoint`, if any."""
    from safetensors import safe_open

    local = PathManager.get_local_path(filename)
    if not os.path.isfile(local):
        raise FileNotFoundError(f"checkpoint {filename} does not exist")
    with safe_open(local, framework="pt", device="cpu") as f:
        metadata = f.metadata() or {}
        state = {k: f.get_tensor(k) for k in f.keys()}
    out: Dict[str, Any] = {}
    extras = metadata.get(SAFETENSORS_METADATA_KEY)
    if extras:
        try:
            extras = json.loads(extras)
        except json.JSONDecodeError as e:
            raise ValueError(f"{filename}: metadata entry {SAFETENSORS_METADATA_KEY!r} is not JSON: {e}") from e
        if not isinstance(extras, dict) or "model" in extras:
            raise ValueError(f"{filename}: metadata entry {SAFETENSORS_METADATA_KEY!r} must be a JSON object without 'model'")
        out.update(extras)
    out["model"] = state
    return out


def load_checkpoint_file(filename: str, log: logging.Logger = logger) -> Dict[str, Any]:
    """A checkpoint dict with a "model" entry, read without running code (see module doc).

    Raises:
        UnsafePickleError: the file needs a global outside the data allow-list; names the file
            and the global.
    """
    if filename.endswith(".pkl"):
        return _load_pkl(filename, log)
    if filename.endswith(".safetensors"):
        return load_safetensors_checkpoint(filename)
    # a local path (as fvcore passes it): torch reads zip checkpoints faster than from a stream
    loaded = torch_load_weights_only(PathManager.get_local_path(filename), source=filename)
    if filename.endswith(".pyth"):
        # pycls
        if not isinstance(loaded, dict) or "model_state" not in loaded:
            raise ValueError(f"Cannot load .pyth file {filename}; pycls checkpoints must contain 'model_state'.")
        state = {k: v for k, v in loaded["model_state"].items() if not k.endswith("num_batches_tracked")}
        return {"model": state, "__author__": "pycls", "matching_heuristics": True}
    if not isinstance(loaded, dict):
        raise ValueError(f"{filename}: a checkpoint must hold a dict (a state dict), got {type(loaded).__name__}")
    if "model" not in loaded:
        loaded = {"model": loaded}
    return loaded


def _as_tensor(name: str, value):
    import numpy as np
    import torch

    if isinstance(value, np.ndarray):
        value = torch.from_numpy(value)
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"state dict entry {name!r} is a {type(value).__name__}, not a tensor")
    # contiguous copies: safetensors refuses views and tensors that share memory
    return value.detach().cpu().contiguous().clone()


def save_checkpoint(checkpoint: Mapping[str, Any], path: str) -> str:
    """Write ``{"model": state_dict, **extras}`` by the extension of ``path``:

    * ``.safetensors``: the tensors, and ``extras`` (plain JSON values: ``__author__``,
      ``matching_heuristics``, ...) as one JSON metadata entry;
    * ``.pkl``: detectron2's model-zoo layout, tensors as NumPy arrays;
    * anything else: ``torch.save``.
    """
    if "model" not in checkpoint:
        raise ValueError("save_checkpoint expects a dict with a 'model' state dict")
    os.makedirs(os.path.dirname(os.path.abspath(path)) or ".", exist_ok=True)
    extras = {k: v for k, v in checkpoint.items() if k != "model"}
    if path.endswith(".safetensors"):
        from safetensors.torch import save_file

        try:
            meta = json.dumps(extras)
        except TypeError as e:
            raise TypeError(f"{path}: only plain JSON values can go beside the tensors in .safetensors: {e}") from e
        tensors = {k: _as_tensor(k, v) for k, v in checkpoint["model"].items()}
        save_file(tensors, path, metadata={"format": "pt", SAFETENSORS_METADATA_KEY: meta})
    elif path.endswith(".pkl"):
        import pickle

        obj = dict(extras, model={k: _as_tensor(k, v).numpy() for k, v in checkpoint["model"].items()})
        obj.setdefault("__author__", "restr-d2")
        with open(path, "wb") as f:
            pickle.dump(obj, f)
    else:
        import torch

        torch.save(dict(checkpoint), path)
    return path


def _safe_load_file(self, filename):
    return load_checkpoint_file(filename, getattr(self, "logger", logger))


class SafeDetectionCheckpointer(DetectionCheckpointer):
    """``DetectionCheckpointer`` whose files are read by :func:`load_checkpoint_file`: ``.pkl``
    through the restricted unpickler, ``.safetensors`` supported, ``torch.load`` weights-only."""

    _load_file = _safe_load_file


def install_safe_checkpoint_loading() -> None:
    """Make detectron2's ``DetectionCheckpointer`` (and so ``DefaultPredictor``,
    ``DefaultTrainer``, and any subclass that does not override ``_load_file``) read files with
    :func:`load_checkpoint_file`. Idempotent."""
    if DetectionCheckpointer.__dict__.get("_load_file") is not _safe_load_file:
        DetectionCheckpointer._load_file = _safe_load_file
        logger.debug("DetectionCheckpointer._load_file: restricted unpickling, weights-only torch.load, .safetensors")
