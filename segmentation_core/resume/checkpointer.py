import logging
import os
import re
import tempfile

import torch

from ..checkpoint_policy import check_loaded_weights, weights_policy
from ..safe_checkpoint import (  # noqa: F401  (CorruptCheckpointError: re-exported, its old home)
    CorruptCheckpointError,
    SafeDetectionCheckpointer,
    UnsafePickleError,
    read_checkpoint_file,
)

logger = logging.getLogger(__name__)


def _atomic_write(path, write):
    """Write through a temp file in the same directory, fsync, then rename over `path`, so a
    kill at any moment leaves either the old file or the complete new one."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        # mkstemp creates the file 0600; a checkpoint gets the mode torch.save / open() would
        # give it (0666 minus the umask), so that colleagues on a shared cluster can read it
        os.fchmod(fd, 0o666 & ~_current_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _current_umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# the temp files of _atomic_write: "<name>.<mkstemp's random part>.tmp" for checkpoints and
# last_checkpoint; a kill between mkstemp and the rename leaves one behind
_STALE_TMP = re.compile(r"^(?:.+\.pth|last_checkpoint)\.[A-Za-z0-9_]+\.tmp$")


def remove_stale_temp_files(save_dir):
    """Delete the partial checkpoint files an interrupted save left in ``save_dir`` (only names
    of the form ``<checkpoint>.pth.<random>.tmp`` / ``last_checkpoint.<random>.tmp``); logs
    what was removed and returns the paths."""
    if not save_dir or "://" in save_dir or not os.path.isdir(save_dir):
        return []
    removed = []
    for name in sorted(os.listdir(save_dir)):
        path = os.path.join(save_dir, name)
        if _STALE_TMP.match(name) and os.path.isfile(path):
            size = os.path.getsize(path)
            os.unlink(path)
            removed.append((path, size))
    if removed:
        logger.warning(f"removed {len(removed)} partial checkpoint file(s) left by an interrupted save "
                       f"({sum(s for _, s in removed) / 2**20:.1f} MiB): "
                       + ", ".join(os.path.basename(p) for p, _ in removed))
    return [p for p, _ in removed]


def _iteration_of(filename):
    m = re.search(r"(\d+)\.pth$", filename)
    return int(m.group(1)) if m else -1


class ResilientCheckpointer(SafeDetectionCheckpointer):
    """DetectionCheckpointer whose saves are atomic, whose loads name corrupt files, and whose
    resume falls back (with a warning) to the newest readable checkpoint when the one tagged in
    ``last_checkpoint`` is corrupt. The corrupt file is kept, renamed to ``*.corrupt``.

    Every load is checked (``segmentation_core.checkpoint_policy``): resuming needs the whole model;
    the initial load of ``resume_or_load`` (``MODEL.WEIGHTS``) follows ``initial_weights_policy``
    ("partial" for training from pretrained weights, "complete" for evaluation);
    ``weights_strict=False`` (``MODEL.WEIGHTS_STRICT``) makes every load lenient (warnings).
    Files are read without running code (:class:`SafeDetectionCheckpointer`); a file refused
    for that (``UnsafePickleError``) is not "corrupt": it stops the load, with no fallback.
    """

    def __init__(self, model, save_dir="", *, weights_strict=True, initial_weights_policy="partial",
                 **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.weights_strict = weights_strict
        self.initial_weights_policy = initial_weights_policy
        if self.save_to_disk:
            # one process per output folder writes checkpoints: what it finds half-written is stale
            remove_stale_temp_files(save_dir)
        self._policy = "complete"
        self._source = "checkpoint"

    def _load_model(self, checkpoint):
        state = checkpoint.get("model", {})
        file_keys = list(state.keys()) if isinstance(state, dict) else []
        with weights_policy(self.model, "off"):  # checked here, with the file's keys and shapes
            incompatible = super()._load_model(checkpoint)
        check_loaded_weights(self.model, self._source, missing=incompatible.missing_keys,
                             unexpected=incompatible.unexpected_keys,
                             incorrect_shapes=incompatible.incorrect_shapes,
                             policy=self._policy if self.weights_strict else "lenient", checkpoint_keys=file_keys)
        return incompatible

    def save(self, name, **kwargs):
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info(f"Saving checkpoint to {save_file}")
        _atomic_write(save_file, lambda f: torch.save(data, f))
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename):
        save_file = os.path.join(self.save_dir, "last_checkpoint")
        _atomic_write(save_file, lambda f: f.write(last_filename_basename.encode()))

    def load(self, path, checkpointables=None):
        if path and "://" not in path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"checkpoint '{path}' does not exist. Check MODEL.WEIGHTS (or the "
                "'last_checkpoint' file in OUTPUT_DIR when resuming)."
            )
        if not path and self._policy == "complete" and self.weights_strict:
            raise FileNotFoundError("no checkpoint to load: MODEL.WEIGHTS is empty and OUTPUT_DIR has no "
                                    "last_checkpoint; evaluating random weights gives meaningless numbers")
        self._source = path
        checkpoint = super().load(path, checkpointables=checkpointables)
        if path:
            iteration = checkpoint.get("iteration") if isinstance(checkpoint, dict) else None
            self.logger.info(f"loaded {path}" + (f" (iteration {iteration})" if iteration is not None else ""))
        return checkpoint

    def _load_file(self, filename):
        return read_checkpoint_file(lambda f: super(ResilientCheckpointer, self)._load_file(f), filename)

    def _readable_checkpoints(self):
        files = [f for f in self.get_all_checkpoint_files() if not f.endswith(".corrupt")]
        return sorted(files, key=lambda f: (_iteration_of(f), os.path.getmtime(f)), reverse=True)

    def resume_or_load(self, path, *, resume=True):
        if not (resume and self.has_checkpoint()):
            self._policy = self.initial_weights_policy
            try:
                return super().resume_or_load(path, resume=resume)
            finally:
                self._policy = "complete"
        tagged = self.get_checkpoint_file()
        candidates = [tagged] + [f for f in self._readable_checkpoints() if f != tagged]
        for i, candidate in enumerate(candidates):
            try:
                return self.load(candidate)
            except (CorruptCheckpointError, FileNotFoundError) as e:
                logger.warning(f"{e}")
                if os.path.isfile(candidate):
                    os.replace(candidate, candidate + ".corrupt")
                    logger.warning(f"renamed the unreadable checkpoint to {candidate}.corrupt")
                if i + 1 < len(candidates):
                    logger.warning(f"falling back to the previous checkpoint {candidates[i + 1]}")
        raise CorruptCheckpointError(tagged, "no readable checkpoint left in " + self.save_dir)
