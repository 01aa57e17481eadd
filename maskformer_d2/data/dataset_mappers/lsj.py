"""Large-scale jitter (LSJ) augmentation of the Mask2Former COCO "new baseline" mappers."""
import logging

from detectron2.config import configurable
from detectron2.data import transforms as T

__all__ = ["build_lsj_augmentation"]


def build_lsj_augmentation(cfg, is_train):
    """Flip (``INPUT.RANDOM_FLIP``), resize to ``[MIN_SCALE, MAX_SCALE] x IMAGE_SIZE`` keeping
    the aspect ratio, then a fixed ``IMAGE_SIZE`` square crop (padded when smaller)."""
    if not is_train:
        raise ValueError("LSJ augmentation is training-only; inference uses detectron2's DatasetMapper")
    size = cfg.INPUT.IMAGE_SIZE
    augs = []
    if cfg.INPUT.RANDOM_FLIP != "none":
        augs.append(
            T.RandomFlip(
                horizontal=cfg.INPUT.RANDOM_FLIP == "horizontal",
                vertical=cfg.INPUT.RANDOM_FLIP == "vertical",
            )
        )
    augs += [
        T.ResizeScale(
            min_scale=cfg.INPUT.MIN_SCALE, max_scale=cfg.INPUT.MAX_SCALE,
            target_height=size, target_width=size,
        ),
        T.FixedSizeCrop(crop_size=(size, size)),
    ]
    return augs


class LSJDatasetMapperBase:
    """Constructor and config of the large-scale-jitter mappers (``coco_instance_lsj``,
    ``coco_panoptic_lsj``); subclasses implement ``__call__``."""

    @configurable
    def __init__(self, is_train=True, *, tfm_gens, image_format):
        self.tfm_gens = tfm_gens
        self.img_format = image_format
        self.is_train = is_train
        logging.getLogger(__name__).info(f"[{type(self).__name__}] augmentations: {tfm_gens}")

    @classmethod
    def from_config(cls, cfg, is_train=True):
        return {
            "is_train": is_train,
            "tfm_gens": build_lsj_augmentation(cfg, is_train),
            "image_format": cfg.INPUT.FORMAT,
        }
