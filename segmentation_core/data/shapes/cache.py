"""Lazy, verified, process-safe generation of the ``shapes`` datasets.

:func:`ensure_shapes` is called by every registered loader. Under an exclusive lock on
``<root>/shapes.lock`` it checks ``<root>/shapes`` against its manifest (parameters, then size
and sha256 of every file, then the ``COMPLETE`` marker); if anything is missing, corrupt or
generated with other parameters, it logs the reason and regenerates the dataset into a
temporary folder next to it, then moves the generated files in with ``os.replace``: only files
the generator owns (listed in the new or the previous manifest) are replaced or deleted, so
files a user put in the folder stay. The ``COMPLETE`` marker goes first and comes back last, so a
reader never takes a half-written dataset for valid, and two processes never generate at the
same time.

Parameters come from the arguments, else from the environment:
``SHAPES_NUM_TRAIN`` (default 200), ``SHAPES_NUM_VAL`` (default 50), ``SHAPES_SEED`` (0).
The root is ``$DETECTRON2_DATASETS`` (default ``./datasets``).
"""
import contextlib
import json
import logging
import os
import shutil
import uuid
from dataclasses import asdict
from typing import List, Optional

from .generate import COMPLETE, MANIFEST, ShapesConfig, file_digest, generate_shapes, list_files

logger = logging.getLogger(__name__)

SHAPES_DIRNAME = "shapes"


def datasets_root(root: Optional[str] = None) -> str:
    return root if root is not None else os.getenv("DETECTRON2_DATASETS", "datasets")


def _env_int(name: str, default: int) -> int:
    value = os.getenv(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"Environment variable {name}={value!r} must be an integer") from None
    if number < 0:
        raise ValueError(f"Environment variable {name}={value!r} must be >= 0")
    return number


def config_from_env(num_train: Optional[int] = None, num_val: Optional[int] = None,
                    seed: Optional[int] = None) -> ShapesConfig:
    """A :class:`ShapesConfig` from explicit values, else ``SHAPES_NUM_TRAIN`` /
    ``SHAPES_NUM_VAL`` / ``SHAPES_SEED``, else the defaults."""
    d = ShapesConfig()
    return ShapesConfig(
        num_train=num_train if num_train is not None else _env_int("SHAPES_NUM_TRAIN", d.num_train),
        num_val=num_val if num_val is not None else _env_int("SHAPES_NUM_VAL", d.num_val),
        seed=seed if seed is not None else _env_int("SHAPES_SEED", d.seed),
    )


def verify_shapes(dataset_dir: str, config: ShapesConfig, check_hashes: bool = True) -> List[str]:
    """Problems that make ``dataset_dir`` unusable for ``config``; empty if it is valid."""
    manifest_path = os.path.join(dataset_dir, MANIFEST)
    marker_path = os.path.join(dataset_dir, COMPLETE)
    if not os.path.isdir(dataset_dir):
        return [f"{dataset_dir} does not exist"]
    if not os.path.isfile(marker_path) or not os.path.isfile(manifest_path):
        return [f"{dataset_dir} is incomplete (no {COMPLETE} marker or {MANIFEST})"]
    try:
        with open(manifest_path) as f:
            manifest = json.load(f)
        with open(marker_path) as f:
            marker = f.read().strip()
    except (OSError, ValueError) as e:
        return [f"{manifest_path} is unreadable: {e}"]
    if marker != file_digest(manifest_path):
        return [f"{manifest_path} does not match the checksum in {marker_path}"]
    if manifest.get("config") != asdict(config):
        return [f"{dataset_dir} was generated with {manifest.get('config')}, "
                f"but {config} is requested"]
    problems = []
    for rel, info in manifest["files"].items():
        path = os.path.join(dataset_dir, rel)
        if not os.path.isfile(path):
            problems.append(f"missing file {path}")
        elif os.path.getsize(path) != info["size"]:
            problems.append(f"wrong size of {path}: {os.path.getsize(path)} != {info['size']}")
        elif check_hashes and file_digest(path) != info["sha256"]:
            problems.append(f"wrong checksum of {path}")
    return problems


def _owned_files(dataset_dir: str) -> List[str]:
    """The files the previous generation wrote (its manifest's list, the manifest and the
    marker); only those of a readable manifest, else none."""
    try:
        with open(os.path.join(dataset_dir, MANIFEST)) as f:
            files = list(json.load(f)["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return files + [MANIFEST, COMPLETE]


def _replace_owned_files(new_dir: str, dataset_dir: str, manifest) -> None:
    """Move the freshly generated ``new_dir`` into ``dataset_dir``, touching only files the
    generator owns: the new ones are renamed over the old, files of the previous manifest that
    are no longer generated are deleted, anything else (a user's notes, extra folders) stays.
    The ``COMPLETE`` marker is removed first and written last, so a reader never takes the
    folder for valid half-way."""
    old_files = _owned_files(dataset_dir)
    marker = os.path.join(dataset_dir, COMPLETE)
    if os.path.lexists(marker):
        os.remove(marker)
    new_files = list(manifest["files"]) + [MANIFEST, COMPLETE]
    for rel in new_files:
        if rel == COMPLETE:
            continue
        target = os.path.join(dataset_dir, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if os.path.isdir(target) and not os.path.islink(target):
            raise RuntimeError(f"cannot regenerate {target}: a folder has the name of a generated file; move it away")
        os.replace(os.path.join(new_dir, rel), target)
    kept = set(new_files)
    stale = [rel for rel in old_files if rel not in kept and os.path.isfile(os.path.join(dataset_dir, rel))]
    for rel in stale:
        os.remove(os.path.join(dataset_dir, rel))
    if stale:
        logger.info("Removed %d files of the previous shapes generation from %s", len(stale), dataset_dir)
    os.replace(os.path.join(new_dir, COMPLETE), marker)


@contextlib.contextmanager
def _exclusive_lock(path: str):
    import fcntl  # POSIX; detectron2 datasets are generated on Linux / macOS

    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def ensure_shapes(root: Optional[str] = None, config: Optional[ShapesConfig] = None,
                  regenerate: bool = True, progress: bool = True) -> str:
    """Return ``<root>/shapes`` after making sure it holds a valid dataset for ``config``.

    With ``regenerate=False`` an invalid dataset raises RuntimeError listing the problems
    instead of being regenerated.
    """
    root = datasets_root(root)
    config = config if config is not None else config_from_env()
    dataset_dir = os.path.join(root, SHAPES_DIRNAME)
    os.makedirs(root, exist_ok=True)
    with _exclusive_lock(os.path.join(root, f"{SHAPES_DIRNAME}.lock")):
        problems = verify_shapes(dataset_dir, config)
        if not problems:
            return dataset_dir
        shown = "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
        if not regenerate:
            raise RuntimeError(
                f"The shapes dataset at {dataset_dir} is not usable: {shown}. Delete it or call "
                "ensure_shapes(regenerate=True) (the dataset root is $DETECTRON2_DATASETS, "
                f"currently {root!r})."
            )
        if os.path.exists(dataset_dir):
            logger.warning("Regenerating the shapes dataset at %s: %s", dataset_dir, shown)
        tmp = os.path.join(root, f"{SHAPES_DIRNAME}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            manifest = generate_shapes(tmp, config, progress=progress)
            if os.path.exists(dataset_dir):
                _replace_owned_files(tmp, dataset_dir, manifest)
            else:
                os.rename(tmp, dataset_dir)
        finally:
            if os.path.exists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)
        return dataset_dir


__all__ = ["ensure_shapes", "verify_shapes", "config_from_env", "datasets_root", "list_files"]
