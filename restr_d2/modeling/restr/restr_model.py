"""ReSTR meta-architecture: referring image segmentation with transformers (Kim et al., CVPR
2022), as a detectron2 model.

Module tree and state-dict keys equal the official ``model.restr.ReSTR``: ``encoder_v`` (plain
ViT), ``encoder_l`` (language encoder), ``fusion_module`` (fusion encoder, adaptive classifier,
decoder), so an official checkpoint loads with ``strict=True`` (see ``checkpoint.py``).
"""
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY
from detectron2.structures import ImageList
from torch import nn

from segmentation_core.acceleration import Acceleration
from segmentation_core.precision import InferencePrecision
from segmentation_core.checkpoint_policy import require_complete_weights, weights_strict_from_cfg

from ..backbone.d2_vit import vit_kwargs_from_config
from ..backbone.feature_cache import FrozenFeatureCache
from ..backbone.vit import VisionTransformer
from ..language.blocks import init_restr_weights
from ..language.build import build_language_encoder
from .criterion import ReferringCriterion
from .fusion import build_fusion_module
from .resize import PAD_LAYOUTS, undo_resize_and_pad

__all__ = ["ReSTR", "build_restr_vit"]

logger = logging.getLogger(__name__)


def build_restr_vit(cfg) -> VisionTransformer:
    """``encoder_v`` from ``MODEL.VIT.*`` with the official ReSTR init (the patch-embedding conv
    is xavier-uniform with zero bias, unlike Segmenter's)."""
    v = cfg.MODEL.VIT
    logger.info(f"ReSTR vision encoder: ViT {v.EMBED_DIM}x{v.DEPTH}, attention {v.ATTN_IMPL!r}")
    vit = VisionTransformer(**vit_kwargs_from_config(cfg))
    vit.patch_embed.proj.apply(init_restr_weights)
    return vit


@META_ARCH_REGISTRY.register()
class ReSTR(nn.Module):
    """Image + referring expression -> foreground mask.

    Input (detectron2 batched inputs, CONTRACTS.md "Referring mapper"): per sample ``image``
    (3, S, S) uint8/float in ``INPUT.FORMAT`` (RGB), ``sentence`` str, and ``gt_mask`` (S, S) for
    training; ``height``, ``width``, ``resized_size`` for inference.

    Training returns ``{"loss_pixel", "loss_patch"}`` (already weighted). Inference returns per
    sample ``{"ref_seg": (height, width) float32 probability, "ref_score": 0-d tensor}``: the
    pixel logits are un-padded and resized to the original size, then passed through a sigmoid.
    ``ref_score`` is the mean probability over the predicted mask (``ref_seg > threshold``), 0
    when the mask is empty.
    """

    @configurable
    def __init__(
        self,
        *,
        encoder_v: VisionTransformer,
        encoder_l: nn.Module,
        fusion_module: nn.Module,
        criterion: ReferringCriterion,
        pixel_mean: Sequence[float] = (127.5, 127.5, 127.5),
        pixel_std: Sequence[float] = (127.5, 127.5, 127.5),
        mask_threshold: float = 0.5,
        pad_layout: str = "bottom_right",
        acceleration: Optional[Acceleration] = None,
        weights_strict: bool = True,
        resize_pixel_logits: bool = False,
        inference_precision: Optional[InferencePrecision] = None,
        feature_cache_mb: float = 0,
    ):
        """
        Args:
            encoder_v: plain ViT (``forward_features`` -> (B, T + N, Dv)).
            encoder_l: language encoder (``tokenize`` + ``forward``, see ``language/build.py``).
            fusion_module: a ``MultimodalFusion``.
            criterion: training loss.
            pixel_mean, pixel_std: input normalisation (official: 127.5, 127.5).
            mask_threshold: probability threshold of ``ref_score``'s mask.
            pad_layout: test-time padding of the inputs, "bottom_right" or "center".
            weights_strict: every ``load_state_dict`` (detectron2's checkpointer included) must cover
                the whole model (``segmentation_core.checkpoint_policy``); False: load what fits, with a warning.
            acceleration: optional ``torch.compile`` / channels-last of submodules (default: the
                vision encoder), applied last; the state dict is unchanged.
            resize_pixel_logits: resize the decoder's pixel logits to the input size (bilinear,
                align_corners=False) when they differ: patch sizes that are not a power of two.
            inference_precision: the dtype of ``predict`` in eval mode (``MODEL.INFERENCE_DTYPE``;
                default float32); post-processing is float32 either way.
            feature_cache_mb: > 0: memoise the frozen ``encoder_v``'s per-image features up to
                this many MiB (``FrozenFeatureCache``); needs ``encoder_v.frozen``.
        """
        super().__init__()
        if pad_layout not in PAD_LAYOUTS:
            raise ValueError(f"pad_layout must be one of {PAD_LAYOUTS}, got {pad_layout!r}")
        self.encoder_v = encoder_v
        self.encoder_l = encoder_l
        self.fusion_module = fusion_module
        self.criterion = criterion
        self.patch_size = encoder_v.patch_size
        self.mask_threshold = float(mask_threshold)
        self.pad_layout = pad_layout
        self.resize_pixel_logits = bool(resize_pixel_logits)
        # non-persistent: official checkpoints have no such keys
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std).view(-1, 1, 1), False)
        self.inference_precision = inference_precision or InferencePrecision()
        self.feature_cache = None
        if feature_cache_mb > 0:
            if not encoder_v.frozen:
                raise ValueError(
                    f"MODEL.VIT.FEATURE_CACHE_MB={feature_cache_mb} needs a frozen vision encoder: a ViT that "
                    f"trains changes its features every step. Set MODEL.VIT.FREEZE True, or FEATURE_CACHE_MB 0"
                )
            self.feature_cache = FrozenFeatureCache(lambda x: self.encoder_v.forward_features(x), int(feature_cache_mb * 2**20), "ViT")
            logger.info(f"ReSTR ViT feature cache on (MODEL.VIT.FEATURE_CACHE_MB {feature_cache_mb}): the frozen ViT "
                        f"runs once per distinct input image, one image at a time")
            # new weights make every cached feature stale (e.g. a checkpoint loaded after an evaluation)
            self.register_load_state_dict_post_hook(lambda module, incompatible: module.feature_cache.clear())
        require_complete_weights(self, strict=weights_strict)
        if acceleration is not None:
            acceleration.apply(self, image_encoder="encoder_v", image_encoder_entry="forward_features")

    @classmethod
    def from_config(cls, cfg):
        r = cfg.MODEL.RESTR
        encoder_v = build_restr_vit(cfg)
        d_vision = encoder_v.embed_dim
        # official: the language encoder outputs the ViT width
        encoder_l = build_language_encoder(cfg, d_vision)
        fusion = build_fusion_module(cfg, d_vision, encoder_l.d_model)
        if not r.DECODER.ENABLED and r.PATCH_WEIGHT != 0:
            logger.warning(
                "ReSTR without decoder trains with PATCH_WEIGHT=%s; the official trainer uses 0",
                r.PATCH_WEIGHT,
            )
        if r.LANGUAGE.NAME != "GloVeTransformerEncoder" and not r.MASK_PAD_TOKENS:
            logger.warning(
                "MODEL.RESTR.MASK_PAD_TOKENS is False with %s: pad tokens take part in the "
                "fusion attention (official GloVe behaviour)",
                r.LANGUAGE.NAME,
            )
        logger.info(f"ReSTR test-time pad layout: {r.TEST.PAD_LAYOUT} (MODEL.RESTR.TEST.PAD_LAYOUT)")
        return dict(
            encoder_v=encoder_v,
            encoder_l=encoder_l,
            fusion_module=fusion,
            criterion=ReferringCriterion(
                encoder_v.patch_size, r.PATCH_WEIGHT, r.PATCH_LABEL_THRESHOLD, r.DICE_WEIGHT
            ),
            pixel_mean=cfg.MODEL.PIXEL_MEAN,
            pixel_std=cfg.MODEL.PIXEL_STD,
            mask_threshold=r.TEST.MASK_THRESHOLD,
            pad_layout=r.TEST.PAD_LAYOUT,
            acceleration=Acceleration.from_config(cfg),
            weights_strict=weights_strict_from_cfg(cfg),
            resize_pixel_logits=bool(r.DECODER.RESIZE_TO_INPUT and r.DECODER.ENABLED),
            inference_precision=InferencePrecision.from_config(cfg),
            feature_cache_mb=cfg.MODEL.VIT.FEATURE_CACHE_MB,
        )

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """(3, H, W) uint8/float in 0..255 -> normalised float."""
        return (image.to(self.device).float() - self.pixel_mean) / self.pixel_std

    def predict(
        self,
        images: torch.Tensor,
        sentences: Optional[Sequence[str]] = None,
        tokens: Optional[Dict[str, torch.Tensor]] = None,
    ) -> Dict[str, torch.Tensor]:
        """Network on normalised (B, 3, H, W) images (H, W multiples of the patch size) and B
        sentences (or pre-made ``tokens`` from ``encoder_l.tokenize``). A single image (B = 1)
        with several sentences runs the vision encoder once and shares its features.

        Returns the fusion outputs (``pixel_logits``, ``patch_logits``, ``norm_out``,
        ``decoder_in``) plus ``vision_features`` (B, T + N, Dv) and ``language_features``
        (B, T_l, D).
        """
        if tokens is None:
            if sentences is None:
                raise ValueError("give either sentences or tokens")
            tokens = self.encoder_l.tokenize(list(sentences))
        tokens = {k: v.to(self.device) for k, v in tokens.items()}
        num_sentences = next(iter(tokens.values())).shape[0]
        if images.shape[0] not in (1, num_sentences):
            raise ValueError(f"{num_sentences} sentences for {images.shape[0]} images")
        lang = self.encoder_l(**tokens)
        if self.feature_cache is not None:
            feats = self.feature_cache(images)
        else:
            feats = self.encoder_v.forward_features(images)
        if feats.shape[0] != num_sentences:
            feats = feats.expand(num_sentences, -1, -1)
        grid = (images.shape[-2] // self.patch_size, images.shape[-1] // self.patch_size)
        out = self.fusion_module(feats[:, self.encoder_v.num_extra_tokens :], grid, lang)
        if self.resize_pixel_logits and tuple(out["pixel_logits"].shape[-2:]) != tuple(images.shape[-2:]):
            out["pixel_logits"] = F.interpolate(out["pixel_logits"], size=tuple(images.shape[-2:]), mode="bilinear",
                                                align_corners=False)
        out["vision_features"] = feats
        out["language_features"] = lang.features
        return out

    def losses(self, outputs: Dict[str, torch.Tensor], gt_masks: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Weighted loss dict from ``predict`` outputs and (B, 1, H, W) GT masks."""
        raw = self.criterion(outputs["pixel_logits"], outputs["patch_logits"], gt_masks)
        return {k: v * self.criterion.weights[k] for k, v in raw.items()}

    def forward(self, batched_inputs: List[Dict]):
        sentences = [x["sentence"] for x in batched_inputs]
        images = self.preprocess_images(batched_inputs)
        if not self.training:
            outputs = self.inference_precision.run(self.predict, images.tensor, sentences,
                                                   device_type=images.tensor.device.type)
            return self.postprocess(outputs["pixel_logits"], batched_inputs, images)
        outputs = self.predict(images.tensor, sentences)
        H, W = images.tensor.shape[-2:]
        gt = images.tensor.new_zeros((len(batched_inputs), 1, H, W))
        for i, x in enumerate(batched_inputs):
            if "gt_mask" not in x:
                raise ValueError("training needs 'gt_mask' in every input (referring mapper)")
            m = x["gt_mask"].to(self.device)
            gt[i, 0, : m.shape[-2], : m.shape[-1]] = m.float()
        return self.losses(outputs, gt)

    def preprocess_images(self, batched_inputs: List[Dict]) -> ImageList:
        """Normalised images padded to the patch size: (B, 3, H, W) with one image per input,
        or (1, 3, H, W) when every input holds the same image tensor (several sentences about
        one image, as ``ReferringPredictor`` sends: one ViT pass); ``image_sizes`` has one
        entry per input either way."""
        first = batched_inputs[0]["image"]
        if len(batched_inputs) > 1 and all(x["image"] is first for x in batched_inputs):
            images = ImageList.from_tensors([self.normalize(first)], self.patch_size)
            return ImageList(images.tensor, images.image_sizes * len(batched_inputs))
        images = [self.normalize(x["image"]) for x in batched_inputs]
        return ImageList.from_tensors(images, self.patch_size)

    def postprocess(self, pixel_logits: torch.Tensor, batched_inputs: List[Dict], images: ImageList):
        input_hw: Tuple[int, int] = tuple(images.tensor.shape[-2:])
        results = []
        for i, x in enumerate(batched_inputs):
            ih, iw = images.image_sizes[i]
            height, width = int(x.get("height", ih)), int(x.get("width", iw))
            logits = pixel_logits[i : i + 1].float()
            if self.pad_layout == "center":
                # the centred input fills the whole (unpadded) image
                if tuple(logits.shape[-2:]) == input_hw:
                    logits = logits[..., :ih, :iw]
                logits = undo_resize_and_pad(logits, (ih, iw), (ih, iw), height, width, "center")
            else:
                valid = tuple(int(v) for v in x.get("resized_size", (ih, iw)))
                logits = undo_resize_and_pad(logits, input_hw, valid, height, width, "bottom_right")
            prob = logits.sigmoid()[0, 0]
            fg = prob > self.mask_threshold
            score = prob[fg].mean() if bool(fg.any()) else prob.new_zeros(())
            results.append({"ref_seg": prob, "ref_score": score})
        return results
