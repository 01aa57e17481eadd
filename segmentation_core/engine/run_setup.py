"""``default_setup`` for a first hour without noise: detectron2's ``default_setup`` with a plain
config dump (no ANSI colour codes in ``OUTPUT_DIR/log.txt``), without torch's "No CUDA runtime
is found" warning on machines without CUDA (printed while detectron2 collects the environment
info, and meaningless there), then one line saying which device runs the model."""
import contextlib
import logging

import torch
from detectron2.engine import default_setup

__all__ = ["default_setup_plain", "describe_device", "log_device"]

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def _plain_config_dumps():
    # default_setup highlights the YAML with pygments for the terminal and logs the same text to
    # log.txt; the file would hold the terminal's escape codes
    import detectron2.engine.defaults as defaults

    original = getattr(defaults, "_highlight", None)
    if original is None:  # another detectron2 version: nothing to undo
        yield
        return
    defaults._highlight = lambda code, filename: code
    try:
        yield
    finally:
        defaults._highlight = original


@contextlib.contextmanager
def _quiet_cuda_probe():
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    if not torch.cuda.is_available():
        cpp_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        cpp_logger.setLevel(level)


def default_setup_plain(cfg, args):
    """detectron2's ``default_setup(cfg, args)``: output folder, loggers, environment info,
    config dump (plain text), seed."""
    with _plain_config_dumps(), _quiet_cuda_probe():
        default_setup(cfg, args)


def describe_device(cfg) -> str:
    device = str(cfg.MODEL.DEVICE)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            return f"{device} (MODEL.DEVICE), but torch sees no CUDA device: set MODEL.DEVICE cpu"
        index = torch.device(device).index or 0
        return f"{device} ({torch.cuda.get_device_name(index)}, MODEL.DEVICE)"
    cuda = "a CUDA device is available: MODEL.DEVICE cuda uses it" if torch.cuda.is_available() else "no CUDA device"
    return f"{device} ({torch.get_num_threads()} threads; {cuda})"


def log_device(cfg, log=None):
    (log or logger).info(f"Device: {describe_device(cfg)}")
