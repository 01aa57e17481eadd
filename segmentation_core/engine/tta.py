"""Semantic-segmentation test-time augmentation: multi-scale + horizontal flip, averaging the
per-class scores at the original resolution."""
import copy
import logging

import torch
from torch import nn

from detectron2.data.transforms import HFlipTransform
from detectron2.modeling import DatasetMapperTTA

__all__ = ["SemanticSegmentorWithTTA"]


class SemanticSegmentorWithTTA(nn.Module):
    """Wraps a model that returns ``{"sem_seg": (C, H, W)}`` at the original resolution.

    The augmented inputs come from detectron2's ``DatasetMapperTTA`` (``TEST.AUG.MIN_SIZES``,
    ``MAX_SIZE``, ``FLIP``); flipped predictions are flipped back before averaging.
    """

    def __init__(self, cfg, model, tta_mapper=None, batch_size=1):
        super().__init__()
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        self.cfg = cfg.clone()
        self.model = model
        self.tta_mapper = tta_mapper if tta_mapper is not None else DatasetMapperTTA(cfg)
        self.batch_size = batch_size
        logging.getLogger(__name__).info(
            f"Semantic TTA: sizes {list(cfg.TEST.AUG.MIN_SIZES)}, max {cfg.TEST.AUG.MAX_SIZE}, "
            f"flip {cfg.TEST.AUG.FLIP}"
        )

    def __call__(self, batched_inputs):
        def _with_size(x):
            ret = copy.copy(x)
            if "image" not in ret:
                raise ValueError("TTA inputs need an 'image' (the test mapper's output)")
            ret.setdefault("height", ret["image"].shape[1])
            ret.setdefault("width", ret["image"].shape[2])
            return ret

        return [self._inference_one_image(_with_size(x)) for x in batched_inputs]

    def _inference_one_image(self, inp):
        augmented = self.tta_mapper(inp)
        total, count = None, 0
        for aug_input in augmented:
            tfm = aug_input.pop("transforms")
            with torch.no_grad():
                pred = self.model([aug_input])[0]["sem_seg"]
            if any(isinstance(t, HFlipTransform) for t in tfm.transforms):
                pred = pred.flip(dims=[2])
            total = pred if total is None else total + pred
            count += 1
        return {"sem_seg": total / count}
