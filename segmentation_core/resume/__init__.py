"""Training that survives being killed: atomic checkpoints, corrupt-checkpoint fallback,
RNG state in checkpoints, a data stream that resumes at the exact sample, and a guard that stops
(or skips) a step whose loss is not finite before it can touch the weights."""
from .checkpointer import CorruptCheckpointError, ResilientCheckpointer  # noqa: F401
from .data_loader import ResumableTrainStream, build_resumable_train_loader  # noqa: F401
from .guard import NonFiniteLossError, find_nonfinite_losses  # noqa: F401
from .rng import capture_rng_state, restore_rng_state  # noqa: F401
