"""Large-scale jitter (LSJ) augmentation of the Mask2Former COCO "new baseline" mappers."""
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
