"""Batched inference with DefaultPredictor's pre-processing: a list of images in, a list of
outputs out.

Images are grouped by their network input size (after ``ResizeShortestEdge``) and each group
runs in batches of ``batch_size``: a batch of differently sized images would be zero-padded to
the largest, and padding changes the outputs of models that do not mask it (MaskFormer,
Mask2Former), so grouping keeps every output equal to what the single-image predictor gives.
"""
import logging
from collections import OrderedDict
from typing import Callable, Dict, List, Sequence, Union

import numpy as np
import torch
from detectron2.data import transforms as T
from detectron2.engine import DefaultPredictor

__all__ = ["DefaultInputs", "BatchPredictor", "run_in_batches"]

logger = logging.getLogger(__name__)


class DefaultInputs:
    """DefaultPredictor's pre-processing: BGR (H, W, 3) uint8 -> ``{"image": (3, h, w) float32
    in INPUT.FORMAT, "height": H, "width": W}`` (``ResizeShortestEdge`` to the test size)."""

    def __init__(self, cfg):
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)
        self.input_format = cfg.INPUT.FORMAT
        if self.input_format not in ("RGB", "BGR"):
            raise ValueError(f"INPUT.FORMAT must be RGB or BGR, got {self.input_format!r}")

    def __call__(self, image_bgr: np.ndarray) -> Dict:
        if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(
                "each image must be an (H, W, 3) numpy array in BGR order (as cv2.imread returns), got "
                f"{type(image_bgr).__name__} {getattr(image_bgr, 'shape', None)}"
            )
        image = image_bgr[:, :, ::-1] if self.input_format == "RGB" else image_bgr
        height, width = image.shape[:2]
        image = self.aug.get_transform(image).apply_image(image)
        return {"image": torch.as_tensor(image.astype("float32").transpose(2, 0, 1)), "height": height, "width": width}


def run_in_batches(
    inputs: Sequence[Dict], run: Callable[[List[Dict]], List[Dict]], batch_size: int
) -> List[Dict]:
    """``run`` on batches of at most ``batch_size`` inputs whose ``image`` tensors have the same
    shape; the outputs come back in the order of ``inputs``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    groups: "OrderedDict[tuple, List[int]]" = OrderedDict()
    for i, x in enumerate(inputs):
        groups.setdefault(tuple(x["image"].shape), []).append(i)
    outputs: List = [None] * len(inputs)
    for indices in groups.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start:start + batch_size]
            for i, out in zip(chunk, run([inputs[i] for i in chunk])):
                outputs[i] = out
    return outputs


class BatchPredictor(DefaultPredictor):
    """``DefaultPredictor`` that also takes a list of BGR images and returns the list of their
    outputs, computed in batches of up to ``batch_size`` same-size images
    (``TEST.BATCH_SIZE``-free: pass ``batch_size``). A single image behaves as
    ``DefaultPredictor``."""

    def __init__(self, cfg, batch_size: int = 8):
        super().__init__(cfg)
        self.batch_size = int(batch_size)
        self.make_inputs = DefaultInputs(cfg)

    def __call__(self, images: Union[np.ndarray, Sequence[np.ndarray]]):
        if isinstance(images, np.ndarray):
            return self([images])[0]
        inputs = [self.make_inputs(im) for im in images]
        with torch.no_grad():
            return run_in_batches(inputs, self.model, self.batch_size)
