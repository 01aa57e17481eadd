"""Segmenter meta-architecture: plain ViT encoder + linear or mask-transformer decoder.

The sub-modules are named ``encoder`` and ``decoder`` as in the official ``segm.model``, so an
official checkpoint's ``model`` state dict loads into this module with ``strict=True``.
"""
import functools
import logging
from typing import Callable, Dict, List, Optional

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from detectron2.structures import ImageList
from torch import nn

from segmentation_core.acceleration import Acceleration
from segmentation_core.precision import InferencePrecision
from segmentation_core.checkpoint_policy import require_complete_weights, weights_strict_from_cfg

from ..backbone.vit import pad_to_patch_multiple
from .sliding_window import resize_logits, sliding_window_inference

__all__ = ["Segmenter"]

logger = logging.getLogger(__name__)

TEST_MODES = ("whole", "slide")


@META_ARCH_REGISTRY.register()
class Segmenter(nn.Module):
    """Semantic segmentation with a plain ViT.

    Input: detectron2 batched dicts with ``image`` (3, H, W) RGB in [0, 255] and, in training,
    ``sem_seg`` (H, W) int64 with ``ignore_value`` for unlabeled pixels.
    Training returns ``{"loss_sem_seg": cross-entropy}`` (ignore label skipped) on logits
    upsampled to the padded input size. Inference returns ``{"sem_seg": (C, height, width)}``
    class **probabilities** at the original resolution (as the official ``inference``).
    """

    @configurable
    def __init__(
        self,
        *,
        encoder: nn.Module,
        decoder: nn.Module,
        num_classes: int,
        pixel_mean,
        pixel_std,
        ignore_value: int = 255,
        loss_weight: float = 1.0,
        test_mode: str = "slide",
        window_size: int = 512,
        window_stride: int = 512,
        window_batch_size: int = 4,
        test_flip: bool = False,
        acceleration: Optional[Acceleration] = None,
        weights_strict: bool = True,
        inference_precision: Optional[InferencePrecision] = None,
    ):
        """
        Args:
            encoder: a backbone returning one (B, D, H/P, W/P) map (``D2PlainViT``), with
                attributes ``patch_size`` and ``output_shape()``.
            decoder: (features dict) -> (B, C, H/P, W/P) patch logits.
            num_classes: C.
            pixel_mean, pixel_std: RGB normalization on the 0-255 scale ("vit": 127.5/127.5,
                "deit": ImageNet).
            ignore_value: label skipped by the loss.
            loss_weight: multiplier of the cross-entropy.
            test_mode: "whole" (one forward of the patch-padded image) or "slide" (official
                sliding window, with short side resized up to ``window_size`` if smaller).
            window_size, window_stride, window_batch_size: sliding-window parameters.
            test_flip: also evaluate the horizontally flipped image and average probabilities.
            weights_strict: every ``load_state_dict`` (detectron2's checkpointer included) must cover
                the whole model (``segmentation_core.checkpoint_policy``); False: load what fits, with a warning.
            acceleration: optional ``torch.compile`` / channels-last of submodules (default: the
                encoder), applied last; the state dict is unchanged.
            inference_precision: the dtype of ``segment`` in eval mode (``MODEL.INFERENCE_DTYPE``;
                default float32); softmax, window merging and resizing are float32 either way.
        """
        super().__init__()
        if test_mode not in TEST_MODES:
            raise ValueError(f"test_mode must be one of {TEST_MODES}, got {test_mode!r}")
        self.encoder = encoder
        self.decoder = decoder
        self.num_classes = num_classes
        self.patch_size = encoder.patch_size
        self.ignore_value = ignore_value
        self.loss_weight = loss_weight
        self.test_mode = test_mode
        self.window_size = window_size
        self.window_stride = window_stride
        self.window_batch_size = window_batch_size
        self.test_flip = test_flip
        # non-persistent: keeps the state dict equal to the official checkpoint
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.inference_precision = inference_precision or InferencePrecision()
        require_complete_weights(self, strict=weights_strict)
        if acceleration is not None:
            acceleration.apply(self, image_encoder="encoder")

    @classmethod
    def from_config(cls, cfg):
        if cfg.INPUT.FORMAT != "RGB":
            raise ValueError(
                f"Segmenter expects RGB input (official preprocessing) but INPUT.FORMAT is "
                f"{cfg.INPUT.FORMAT!r}; set INPUT.FORMAT: 'RGB'"
            )
        encoder = build_backbone(cfg)
        decoder = build_sem_seg_head(cfg, encoder.output_shape())
        t = cfg.MODEL.SEGMENTER.TEST
        logger.info(
            f"Segmenter: head {cfg.MODEL.SEM_SEG_HEAD.NAME}, test mode {t.MODE!r} "
            f"(window {t.WINDOW_SIZE}, stride {t.WINDOW_STRIDE}, flip {t.FLIP})"
        )
        return dict(
            encoder=encoder,
            decoder=decoder,
            num_classes=cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            ignore_value=cfg.MODEL.SEM_SEG_HEAD.IGNORE_VALUE,
            loss_weight=cfg.MODEL.SEM_SEG_HEAD.LOSS_WEIGHT,
            test_mode=t.MODE,
            window_size=t.WINDOW_SIZE,
            window_stride=t.WINDOW_STRIDE,
            window_batch_size=t.WINDOW_BATCH_SIZE,
            test_flip=t.FLIP,
            acceleration=Acceleration.from_config(cfg),
            weights_strict=weights_strict_from_cfg(cfg),
            inference_precision=InferencePrecision.from_config(cfg),
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def segment(self, images: torch.Tensor) -> torch.Tensor:
        """Official ``Segmenter.forward``: (B, 3, H, W) normalized -> (B, C, H, W) logits.

        Zero-pads (normalized space) to a multiple of the patch size, decodes at patch level,
        upsamples bilinearly to the padded size, then crops the top-left H x W.
        """
        H, W = images.shape[-2:]
        images = pad_to_patch_multiple(images, self.patch_size)
        masks = self.decoder(self.encoder(images))
        masks = F.interpolate(masks, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return masks[:, :, :H, :W]

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        return (image.to(self.device).float() - self.pixel_mean) / self.pixel_std

    def forward(self, batched_inputs: List[Dict]):
        images = [self.normalize(x["image"]) for x in batched_inputs]
        if self.training:
            return self.losses(images, [x["sem_seg"] for x in batched_inputs])
        return [self.inference(im, x) for im, x in zip(images, batched_inputs)]

    def losses(self, images: List[torch.Tensor], targets: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        # batch padding is 0 in normalized space (the official train pipeline pads after
        # Normalize with 0) and ignore_value in the labels
        images = ImageList.from_tensors(images, self.patch_size, pad_value=0.0).tensor
        targets = ImageList.from_tensors(
            [t.to(self.device) for t in targets], self.patch_size, pad_value=self.ignore_value
        ).tensor
        logits = self.segment(images)
        loss = F.cross_entropy(logits, targets.long(), ignore_index=self.ignore_value)
        return {"loss_sem_seg": loss * self.loss_weight}

    def inference(
        self, image: torch.Tensor, record: Dict, segment: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
    ) -> Dict[str, torch.Tensor]:
        """(3, H, W) normalized image -> ``{"sem_seg": (C, height, width)}`` probabilities.

        ``segment``: the network, (n, 3, h, w) normalized -> (n, C, h, w) logits; default
        ``self.segment`` (the ONNX predictor passes its onnxruntime graph)."""
        if segment is None:
            # MODEL.INFERENCE_DTYPE (float32: exactly self.segment(...))
            segment = functools.partial(self.inference_precision.run, self.segment, device_type=image.device.type)
        out_size = (record.get("height", image.shape[-2]), record.get("width", image.shape[-1]))
        flips = (False, True) if self.test_flip else (False,)
        if self.test_mode == "slide":
            probs = sliding_window_inference(
                segment, image, self.num_classes, out_size, self.window_size,
                self.window_stride, self.window_batch_size, flips,
            )
        else:
            probs = None
            for flip in flips:
                im = image.flip(-1) if flip else image
                logits = resize_logits(segment(im[None])[0], out_size)
                p = (logits.flip(-1) if flip else logits).softmax(0)
                probs = p if probs is None else probs + p
            if len(flips) > 1:
                probs = probs / len(flips)
        return {"sem_seg": probs}
