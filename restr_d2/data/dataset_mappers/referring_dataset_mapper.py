"""Dataset mapper for referring segmentation (``INPUT.DATASET_MAPPER_NAME: "referring"``)."""
import copy
import logging
import re
from typing import Dict, List, Optional

import numpy as np
import torch
from pycocotools import mask as mask_util

from detectron2.config import configurable

from segmentation_core.engine.mapper_registry import register_mapper
from segmentation_core.validation import (
    DEFAULT_MAX_IMAGE_PIXELS, BadRecordError, image_reader_kwargs, read_image_checked,
)
from segmentation_core.validation.records import raise_if_marked_bad

from ...modeling.language.tokenizer import check_sentence
from ...modeling.restr.resize import resize_and_pad_uint8

logger = logging.getLogger(__name__)

FLIP_MODES = ("none", "skip_lr", "swap_lr")
# "left", "right" and the words built on them ("leftmost", "right-hand" is two words anyway).
_LR_WORD = re.compile(r"\b(left|right)(most|hand|side|ward|wards)?\b", re.IGNORECASE)


def has_lr_words(sentence: str) -> bool:
    return _LR_WORD.search(sentence) is not None


def swap_lr_words(sentence: str) -> str:
    """"the leftmost circle left of the star" -> "the rightmost circle right of the star"."""
    def swap(m: "re.Match") -> str:
        word = m.group(1)
        new = {"left": "right", "right": "left"}[word.lower()]
        if word[0].isupper():
            new = new.capitalize()
        if word.isupper():
            new = new.upper()
        return new + (m.group(2) or "")
    return _LR_WORD.sub(swap, sentence)


def _valid_polygons(polygons: List, file_name: str) -> List:
    # pycocotools reads a 4-number "polygon" as a box, and fails on odd lengths: drop those
    # (the dataset-level RecordChecker counts them; here they can only come from raw records)
    kept = [p for p in polygons if len(p) >= 6 and len(p) % 2 == 0]
    if len(kept) < len(polygons):
        logger.debug("%s: dropped %d polygon(s) with < 3 points", file_name, len(polygons) - len(kept))
    return kept


def annotations_to_mask(annotations: List[Dict], height: int, width: int, file_name: str) -> np.ndarray:
    """(H, W) bool union of the annotations' polygons / RLEs / binary masks.

    Raises:
        BadRecordError (``bad_segmentation``): an RLE / mask of another size, or an unsupported
        segmentation type.
    """
    mask = np.zeros((height, width), dtype=bool)
    for ann in annotations:
        segm = ann.get("segmentation")
        if isinstance(segm, list):
            segm = _valid_polygons(segm, file_name)
            if not segm:
                continue
            m = mask_util.decode(mask_util.merge(mask_util.frPyObjects(segm, height, width)))
        elif isinstance(segm, dict):
            if tuple(segm["size"]) != (height, width):
                raise BadRecordError(file_name, "bad_segmentation",
                                     f"RLE of size {tuple(segm['size'])} does not match the image "
                                     f"size {(height, width)}")
            rle = mask_util.frPyObjects(segm, *segm["size"]) if isinstance(segm["counts"], list) else segm
            m = mask_util.decode(rle)
        elif isinstance(segm, np.ndarray):
            m = segm
        else:
            raise BadRecordError(file_name, "bad_segmentation", f"unsupported segmentation type {type(segm).__name__}")
        if m.shape != (height, width):
            raise BadRecordError(file_name, "bad_segmentation",
                                 f"mask of size {m.shape} does not match the image size {(height, width)}")
        mask |= m.astype(bool)
    return mask


def _cfg(cfg, key: str):
    node = cfg
    for part in key.split("."):
        if part not in node:
            raise KeyError(f"Config key {key} is missing; build the config with "
                           "restr_d2.add_restr_config(cfg)")
        node = node[part]
    return node


@register_mapper("referring")
class ReferringDatasetMapper:
    """Reads the image, resizes its long side to S keeping the aspect ratio, pads bottom/right
    with zeros to (S, S), and rasterises the referred object's mask.

    Output dict: ``image`` uint8 (3, S, S); ``sentence`` str (left/right swapped if flipped);
    ``height``, ``width`` original size; ``resized_size`` (h, w) valid region; ``gt_mask``
    uint8 (S, S) in {0, 1}; in test mode also ``gt_mask_orig`` bool (height, width). Record keys
    ``file_name``, ``image_id``, ``ref_id``, ``sent_id`` are passed through.

    A record that cannot be used raises :class:`segmentation_core.validation.BadRecordError` naming the
    file and the reason (unreadable / too large image, size mismatch, sentence without any word
    (``restr_d2.modeling.language.tokenizer.check_sentence``), training record without
    annotations, unusable segmentation); wrap the mapper in ``SafeMapper`` to skip such records
    under ``DATALOADER.BAD_RECORD_POLICY: "skip"``.
    """

    #: the test sets go through this mapper too (sentences, resize-and-pad, ``gt_mask_orig``)
    maps_test_sets = True

    @configurable
    def __init__(self, is_train: bool = True, *, image_size: int, image_format: str = "RGB",
                 flip: str = "none", flip_prob: float = 0.5,
                 max_image_pixels: Optional[int] = DEFAULT_MAX_IMAGE_PIXELS, apply_exif: bool = True):
        """
        Args:
            is_train: training (random flip, no ``gt_mask_orig``) or test mode.
            image_size: S, the side of the padded square.
            image_format: as ``detection_utils.read_image``; ReSTR uses "RGB".
            flip: "none"; "skip_lr" flips only sentences without left/right words;
                "swap_lr" flips any sentence and swaps its left/right words. Training only.
            flip_prob: probability of a horizontal flip.
            max_image_pixels: refuse larger images (``INPUT.MAX_IMAGE_PIXELS``; 0: no limit).
            apply_exif: apply the EXIF orientation (``INPUT.APPLY_EXIF_ORIENTATION``).
        """
        if flip not in FLIP_MODES:
            raise ValueError(f"flip={flip!r}; expected one of {FLIP_MODES}")
        if image_size <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        self.is_train = is_train
        self.image_size = int(image_size)
        self.image_format = image_format
        self.flip = flip if is_train else "none"
        self.flip_prob = flip_prob
        self.reader_kwargs = {"max_pixels": max_image_pixels, "apply_exif": bool(apply_exif)}
        logger.info("[ReferringDatasetMapper] %s mode, size %d, flip %s", "train" if is_train else "test",
                    self.image_size, self.flip)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True):
        reader = image_reader_kwargs(cfg)
        return {
            "is_train": is_train,
            "image_size": _cfg(cfg, "INPUT.IMAGE_SIZE"),
            "image_format": cfg.INPUT.FORMAT,
            "flip": _cfg(cfg, "INPUT.REFERRING_FLIP"),
            "max_image_pixels": reader["max_pixels"],
            "apply_exif": reader["apply_exif"],
        }

    def _read_image(self, dataset_dict: Dict) -> np.ndarray:
        expected = None
        if "height" in dataset_dict and "width" in dataset_dict:
            expected = (dataset_dict["height"], dataset_dict["width"])
        image = read_image_checked(dataset_dict["file_name"], self.image_format,
                                   expected_size=expected, **self.reader_kwargs)
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"INPUT.FORMAT={self.image_format!r} gives {image.shape[-1:]} channels; "
                             "the referring mapper needs a 3-channel format (RGB or BGR)")
        return image

    def __call__(self, dataset_dict: Dict) -> Dict:
        raise_if_marked_bad(dataset_dict)  # e.g. a ref whose annotation is missing (segmentation_core.data.refer)
        dataset_dict = copy.copy(dataset_dict)
        file_name = dataset_dict.get("file_name")
        if not file_name:
            raise BadRecordError(None, "missing_field", f"record without 'file_name' (keys {sorted(dataset_dict)})")
        sentence = dataset_dict.get("sentence")
        try:
            check_sentence(sentence)
        except (TypeError, ValueError) as e:
            raise BadRecordError(file_name, "bad_sentence", f"sentence {sentence!r}: {e}") from e
        if self.is_train and not dataset_dict.get("annotations"):
            raise BadRecordError(file_name, "missing_field",
                                 "training record without 'annotations' (the referred object's mask)")
        image = self._read_image(dataset_dict)
        h, w = image.shape[:2]
        annotations = dataset_dict.pop("annotations", None)
        mask = annotations_to_mask(annotations, h, w, file_name) if annotations is not None else None

        if self.flip != "none" and np.random.rand() < self.flip_prob:
            if self.flip == "swap_lr" or not has_lr_words(sentence):
                image = image[:, ::-1]
                mask = mask[:, ::-1] if mask is not None else None
                sentence = swap_lr_words(sentence)

        padded, resized_size, gt = resize_and_pad_uint8(image, self.image_size, mask)
        dataset_dict["image"] = torch.as_tensor(np.ascontiguousarray(padded.transpose(2, 0, 1)))
        dataset_dict["sentence"] = sentence
        dataset_dict["height"], dataset_dict["width"] = h, w
        dataset_dict["resized_size"] = resized_size
        if mask is not None:
            dataset_dict["gt_mask"] = torch.as_tensor(gt)
            if not self.is_train:
                dataset_dict["gt_mask_orig"] = torch.as_tensor(np.ascontiguousarray(mask))
        return dataset_dict
