"""The errors that mean "your input is wrong" (a config key, a YAML tag, a checkpoint of another
model, a corrupt file, a bad record, a non-finite loss) and how a command line reports them: one
line naming the problem and its fix, exit status 1, no traceback of our internals. A program
error (anything else) keeps its traceback; so does any error with ``RESTR_D2_TRACEBACK=1``."""
import os
import sys
from typing import Callable, Optional, Sequence

from ..checkpoint_policy import CheckpointShapeError
from ..config.families import ConfigFamilyError
from ..config.yaml_loading import ConfigYAMLError
from ..config_checks import ConfigCheckError
from ..data.refer import DatasetFileError
from ..precision import UnsupportedInferenceDtypeError
from ..resume.guard import NonFiniteLossError
from ..safe_checkpoint import CorruptCheckpointError
from ..safe_pickle import UnsafePickleError
from ..validation.errors import BadRecordError

__all__ = ["USER_INPUT_ERRORS", "TRACEBACK_ENV", "run_command_line"]

USER_INPUT_ERRORS = (
    ConfigYAMLError, ConfigFamilyError, ConfigCheckError, CheckpointShapeError, UnsafePickleError,
    CorruptCheckpointError, BadRecordError, DatasetFileError, NonFiniteLossError,
    UnsupportedInferenceDtypeError,
)
TRACEBACK_ENV = "RESTR_D2_TRACEBACK"


def run_command_line(entry: Callable[[Optional[Sequence[str]]], object], program: str,
                     argv: Optional[Sequence[str]] = None) -> int:
    """``entry(argv)``; a :data:`USER_INPUT_ERRORS` error is printed to stderr as
    ``<program>: error: <Type>: <message>`` and gives 1. Returns 0 otherwise."""
    try:
        entry(argv)
    except USER_INPUT_ERRORS as e:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"{program}: error: {type(e).__name__}: {e}\n"
              f"({program} stopped; {TRACEBACK_ENV}=1 shows the traceback)", file=sys.stderr)
        return 1
    return 0
