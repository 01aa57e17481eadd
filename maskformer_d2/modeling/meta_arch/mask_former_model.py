"""The ``MaskFormer`` meta-architecture (MaskFormer and Mask2Former).

backbone -> ``sem_seg_head`` (pixel decoder + transformer decoder) -> per-query class logits
(B, Q, K+1) and mask logits (B, Q, H/4, W/4). Training: ``SetCriterion`` losses, weighted.
Inference: masks upsampled to the padded input size, then semantic / panoptic / instance
results per image at its original resolution.

The two model families differ only in how they are trained and in one panoptic rule. The
family follows ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME`` (the key whose default
``add_maskformer2_config`` / ``add_mask_former_config`` set differently; every official YAML of
either project builds the matching decoder), see ``model_family``:

* "mask2former" (``MultiScaleMaskedTransformerDecoder``): matcher and losses on
  ``TRAIN_NUM_POINTS`` sampled points with sigmoid CE (or focal: ``POINT_LOSS``, read for this
  family only), class cost ``CLASS_WEIGHT``; panoptic segments need ``sigmoid(mask) >= 0.5``.
* "maskformer" (``StandardTransformerDecoder``): focal + dice on full-resolution masks, class
  cost 1; panoptic segments are the argmax regions.
"""
import inspect
import logging
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.data import MetadataCatalog
from detectron2.modeling import META_ARCH_REGISTRY, build_backbone, build_sem_seg_head
from detectron2.modeling.backbone import Backbone
from detectron2.structures import ImageList
from torch import nn

from segmentation_core.acceleration import Acceleration
from segmentation_core.checkpoint_policy import require_complete_weights, weights_strict_from_cfg
from segmentation_core.engine.evaluators import EvalTasks
from segmentation_core.precision import InferencePrecision

from ..banded_postprocessing import (
    band_rows_for_budget,
    canonical_sigmoid,
    postprocess_in_bands,
    resize_scores_in_bands,
)
from ..criterion import SetCriterion
from ..matcher import HungarianMatcher
from ..postprocessing import instance_inference, panoptic_inference, sem_seg_postprocess, semantic_inference

__all__ = ["MaskFormer", "build_criterion", "model_family"]

logger = logging.getLogger(__name__)

# Transformer decoder -> the official project whose training and inference rules apply.
FAMILY_OF_DECODER = {
    "MultiScaleMaskedTransformerDecoder": "mask2former",
    "StandardTransformerDecoder": "maskformer",
}
POINT_LOSSES = ("sigmoid_ce", "focal")


def model_family(cfg) -> str:
    """"mask2former" or "maskformer", from ``MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME``."""
    name = cfg.MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME
    if name not in FAMILY_OF_DECODER:
        raise ValueError(
            f"MODEL.MASK_FORMER.TRANSFORMER_DECODER_NAME={name!r} has no known loss/inference rules; "
            f"use one of {sorted(FAMILY_OF_DECODER)} or add it to "
            "maskformer_d2.modeling.meta_arch.mask_former_model.FAMILY_OF_DECODER"
        )
    return FAMILY_OF_DECODER[name]


def build_criterion(cfg, num_classes: int) -> SetCriterion:
    """Matcher + ``SetCriterion`` of the config's model family, official weights and names."""
    mf = cfg.MODEL.MASK_FORMER
    family = model_family(cfg)
    if family == "mask2former":
        if mf.POINT_LOSS not in POINT_LOSSES:
            raise ValueError(f"MODEL.MASK_FORMER.POINT_LOSS must be one of {POINT_LOSSES}; got {mf.POINT_LOSS!r}")
        class_weight, num_points, mask_loss = mf.CLASS_WEIGHT, mf.TRAIN_NUM_POINTS, mf.POINT_LOSS
        if num_points <= 0:
            raise ValueError(f"MODEL.MASK_FORMER.TRAIN_NUM_POINTS must be > 0; got {num_points}")
    else:
        # MaskFormer hard-codes the class weight to 1 and compares whole masks with focal loss.
        class_weight, num_points, mask_loss = 1, None, "focal"
    mask_grad = ""
    if family == "mask2former":
        mask_grad = ("; gradients through the matched queries' masks only (MODEL.MASK_FORMER.MATCHED_MASK_GRAD)"
                     if mf.MATCHED_MASK_GRAD
                     else "; every query's masks with autograd (MODEL.MASK_FORMER.MATCHED_MASK_GRAD False)")
    logger.info(
        "MaskFormer: %s training/inference rules (TRANSFORMER_DECODER_NAME=%s); mask loss %s on %s%s",
        family,
        mf.TRANSFORMER_DECODER_NAME,
        mask_loss,
        "full-resolution masks" if num_points is None else f"{num_points} sampled points",
        mask_grad,
    )
    matcher = HungarianMatcher(
        cost_class=class_weight,
        cost_mask=mf.MASK_WEIGHT,
        cost_dice=mf.DICE_WEIGHT,
        num_points=num_points,
        mask_cost_type=mask_loss,
    )
    weight_dict = {"loss_ce": class_weight, "loss_mask": mf.MASK_WEIGHT, "loss_dice": mf.DICE_WEIGHT}
    if mf.DEEP_SUPERVISION:
        # Official: DEC_LAYERS - 1 auxiliary predictions for both families.
        base = dict(weight_dict)
        for i in range(mf.DEC_LAYERS - 1):
            weight_dict.update({f"{k}_{i}": v for k, v in base.items()})
    return SetCriterion(
        num_classes,
        matcher=matcher,
        weight_dict=weight_dict,
        eos_coef=mf.NO_OBJECT_WEIGHT,
        losses=["labels", "masks"],
        num_points=num_points,
        oversample_ratio=mf.OVERSAMPLE_RATIO,
        importance_sample_ratio=mf.IMPORTANCE_SAMPLE_RATIO,
        mask_loss_type=mask_loss,
    )


@META_ARCH_REGISTRY.register()
class MaskFormer(nn.Module):
    """Mask classification for semantic, panoptic and instance segmentation.

    Args:
        backbone: detectron2 backbone.
        sem_seg_head: returns ``pred_logits`` (B, Q, K+1), ``pred_masks`` (B, Q, h, w) and,
            with deep supervision, ``aux_outputs``.
        criterion: training losses; its ``weight_dict`` weights them.
        num_queries: Q.
        object_mask_threshold, overlap_threshold: panoptic inference thresholds.
        metadata: dataset metadata; ``thing_dataset_id_to_contiguous_id`` gives the thing classes.
        size_divisibility: pad inputs to a multiple of this; < 0 takes the backbone's.
        sem_seg_postprocess_before_inference: resize mask logits to the output size before
            inference (needed by panoptic/instance) instead of resizing the semantic scores.
        pixel_mean, pixel_std: input normalisation, per channel.
        semantic_on, panoptic_on, instance_on: which results to produce.
        test_topk_per_image: instances kept per image.
        panoptic_requires_mask_prob: Mask2Former's panoptic rule (True) or MaskFormer's (False).
        weights_strict: every ``load_state_dict`` (detectron2's checkpointer included) must cover
            the whole model (``segmentation_core.checkpoint_policy``); False: load what fits, with a warning.
        acceleration: optional ``torch.compile`` / channels-last of submodules (default: the
            backbone), applied last; the state dict is unchanged.
        inference_precision: the dtype of the network in eval mode (``MODEL.INFERENCE_DTYPE``;
            default float32); post-processing is float32 either way.
        postprocess_band_mb: post-process the output in bands of rows such that one band of
            (max(Q, K), rows, W) float32 takes at most this many MiB
            (``banded_postprocessing``; identical results); 0: the whole image at once (the
            (Q, H, W) masks at the output resolution, memory grows with the output size).
        compact_outputs: for huge images: ``sem_seg_labels`` int64 (H, W) instead of the
            (K, H, W) ``sem_seg`` scores and instances with bit-packed ``pred_masks_packed``
            uint8 (N, H, ceil(W / 8)) instead of float ``pred_masks`` (same masks, 1/32 of the
            memory); needs ``postprocess_band_mb`` > 0.
    """

    @configurable
    def __init__(
        self,
        *,
        backbone: Backbone,
        sem_seg_head: nn.Module,
        criterion: nn.Module,
        num_queries: int,
        object_mask_threshold: float,
        overlap_threshold: float,
        metadata,
        size_divisibility: int,
        sem_seg_postprocess_before_inference: bool,
        pixel_mean: Tuple[float, ...],
        pixel_std: Tuple[float, ...],
        semantic_on: bool = True,
        panoptic_on: bool = False,
        instance_on: bool = False,
        test_topk_per_image: int = 100,
        panoptic_requires_mask_prob: bool = True,
        acceleration: Optional[Acceleration] = None,
        weights_strict: bool = True,
        inference_precision: Optional[InferencePrecision] = None,
        postprocess_band_mb: float = 64.0,
        compact_outputs: bool = False,
    ):
        super().__init__()
        self.backbone = backbone
        self.sem_seg_head = sem_seg_head
        # network()'s keyword for the head, looked up once (as MaskFormerHead does for its predictor)
        takes_aux_masks = "aux_masks" in inspect.signature(sem_seg_head.forward).parameters
        self._inference_head_kwargs = {"aux_masks": False} if takes_aux_masks else {}
        self.criterion = criterion
        self.num_queries = num_queries
        self.object_mask_threshold = object_mask_threshold
        self.overlap_threshold = overlap_threshold
        self.metadata = metadata
        self.size_divisibility = backbone.size_divisibility if size_divisibility < 0 else size_divisibility
        self.sem_seg_postprocess_before_inference = sem_seg_postprocess_before_inference
        self.register_buffer("pixel_mean", torch.tensor(pixel_mean, dtype=torch.float32).view(-1, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(pixel_std, dtype=torch.float32).view(-1, 1, 1), False)
        self.semantic_on = semantic_on
        self.panoptic_on = panoptic_on
        self.instance_on = instance_on
        self.test_topk_per_image = test_topk_per_image
        self.panoptic_requires_mask_prob = panoptic_requires_mask_prob
        self.inference_precision = inference_precision or InferencePrecision()
        if not semantic_on and not sem_seg_postprocess_before_inference:
            raise ValueError(
                "panoptic/instance inference needs masks at the output size: set "
                "MODEL.MASK_FORMER.TEST.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE True (or turn SEMANTIC_ON on)"
            )
        if (panoptic_on or instance_on) and not sem_seg_postprocess_before_inference:
            raise ValueError("panoptic/instance inference needs sem_seg_postprocess_before_inference=True")
        if postprocess_band_mb < 0:
            raise ValueError(
                f"MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB must be >= 0 (0: whole image); got {postprocess_band_mb}"
            )
        if compact_outputs and postprocess_band_mb == 0:
            raise ValueError(
                "MODEL.MASK_FORMER.TEST.COMPACT_OUTPUTS needs banded post-processing: set "
                "MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB > 0"
            )
        self.postprocess_band_mb = float(postprocess_band_mb)
        self.compact_outputs = compact_outputs
        if postprocess_band_mb > 0:
            logger.info(
                "MaskFormer inference: post-processing in row bands of at most %g MiB of (queries, rows, width) "
                "float32 (MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB)%s",
                postprocess_band_mb,
                "; compact outputs: sem_seg_labels and pred_masks_packed (MODEL.MASK_FORMER.TEST.COMPACT_OUTPUTS)"
                if compact_outputs else "",
            )
        else:
            logger.info("MaskFormer inference: post-processing the whole image at once "
                        "(MODEL.MASK_FORMER.TEST.POSTPROCESS_BAND_MB 0)")
        require_complete_weights(self, strict=weights_strict)
        if acceleration is not None:
            acceleration.apply(self, image_encoder="backbone")

    @classmethod
    def from_config(cls, cfg):
        backbone = build_backbone(cfg)
        sem_seg_head = build_sem_seg_head(cfg, backbone.output_shape())
        mf = cfg.MODEL.MASK_FORMER
        test = mf.TEST
        return {
            "backbone": backbone,
            "sem_seg_head": sem_seg_head,
            "criterion": build_criterion(cfg, sem_seg_head.num_classes),
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "object_mask_threshold": test.OBJECT_MASK_THRESHOLD,
            "overlap_threshold": test.OVERLAP_THRESHOLD,
            "metadata": MetadataCatalog.get(cfg.DATASETS.TRAIN[0]) if cfg.DATASETS.TRAIN else None,
            "size_divisibility": mf.SIZE_DIVISIBILITY,
            "sem_seg_postprocess_before_inference": (
                test.SEM_SEG_POSTPROCESSING_BEFORE_INFERENCE or test.PANOPTIC_ON or test.INSTANCE_ON
            ),
            "pixel_mean": cfg.MODEL.PIXEL_MEAN,
            "pixel_std": cfg.MODEL.PIXEL_STD,
            "semantic_on": test.SEMANTIC_ON,
            "panoptic_on": test.PANOPTIC_ON,
            "instance_on": test.INSTANCE_ON,
            "test_topk_per_image": cfg.TEST.DETECTIONS_PER_IMAGE,
            "panoptic_requires_mask_prob": model_family(cfg) == "mask2former",
            "acceleration": Acceleration.from_config(cfg),
            "weights_strict": weights_strict_from_cfg(cfg),
            "inference_precision": InferencePrecision.from_config(cfg),
            "postprocess_band_mb": test.POSTPROCESS_BAND_MB,
            "compact_outputs": test.COMPACT_OUTPUTS,
        }

    @staticmethod
    def eval_tasks(cfg) -> EvalTasks:
        """Which outputs the evaluators of ``cfg`` receive (``MODEL.MASK_FORMER.TEST.*_ON``)."""
        test = cfg.MODEL.MASK_FORMER.TEST
        if test.COMPACT_OUTPUTS:
            raise ValueError(
                "MODEL.MASK_FORMER.TEST.COMPACT_OUTPUTS True gives sem_seg_labels and pred_masks_packed, which "
                "detectron2's evaluators do not read; evaluate with COMPACT_OUTPUTS False (POSTPROCESS_BAND_MB "
                "keeps the memory bounded for the dense outputs too)"
            )
        return EvalTasks(semantic=test.SEMANTIC_ON, instance=test.INSTANCE_ON, panoptic=test.PANOPTIC_ON)

    @property
    def device(self) -> torch.device:
        return self.pixel_mean.device

    # ---------------------------------------------------------------------------------- forward
    def forward(self, batched_inputs: List[Dict]):
        """
        Args:
            batched_inputs: detectron2 dicts with ``image`` (C, H, W) in ``INPUT.FORMAT``,
                optional ``height``/``width`` (output size), and in training ``instances``
                with ``gt_classes`` and ``gt_masks``.

        Returns:
            Training: dict of weighted losses. Inference: per image a dict with ``sem_seg``
            (K, H, W), ``panoptic_seg`` (int32 (H, W), segments_info), ``instances``, as enabled.
        """
        images = self.preprocess_images(batched_inputs)
        # eval: the inference network (MODEL.INFERENCE_DTYPE; float32 is these same two calls)
        outputs = self.sem_seg_head(self.backbone(images.tensor)) if self.training else self.network(images.tensor)

        if self.training:
            if "instances" not in batched_inputs[0]:
                raise ValueError(
                    "training inputs need 'instances' (gt_classes, gt_masks); use a MaskFormer dataset mapper "
                    "(INPUT.DATASET_MAPPER_NAME)"
                )
            targets = self.prepare_targets([x["instances"].to(self.device) for x in batched_inputs], images)
            losses = self.criterion(outputs, targets)
            weights = self.criterion.weight_dict
            return {k: v * weights[k] for k, v in losses.items() if k in weights}
        return self.inference(outputs, batched_inputs, images)

    def network(self, images: torch.Tensor) -> Dict:
        """Inference network: (B, 3, Hp, Wp) normalised images -> head outputs ``pred_logits``
        (B, Q, K+1), ``pred_masks`` (B, Q, Hp/4, Wp/4), ``aux_outputs``, run in
        ``inference_precision``; ``pred_logits`` and ``pred_masks`` come back in float32, the
        per-layer ``aux_outputs`` (unused by inference) in the network's dtype. Where the head
        takes ``aux_masks`` (``MaskFormerHead``), the ``aux_outputs`` carry no masks: computing
        the earlier layers' full 1/4-scale masks is most of the decoder's cost that inference
        does not need (the last layer's outputs are the same bits)."""
        return self.inference_precision.run(
            lambda x: self.sem_seg_head(self.backbone(x), **self._inference_head_kwargs), images,
            device_type=images.device.type,
            uncast_keys=("aux_outputs",))

    def preprocess_images(self, batched_inputs: Sequence[Dict]) -> ImageList:
        """The network input: normalised images zero-padded (after normalisation) to a
        multiple of ``size_divisibility``, (B, 3, Hp, Wp), and their sizes before padding."""
        images = [(x["image"].to(self.device) - self.pixel_mean) / self.pixel_std for x in batched_inputs]
        return ImageList.from_tensors(images, self.size_divisibility)

    def prepare_targets(self, instances, images: ImageList) -> List[Dict[str, torch.Tensor]]:
        """GT per image: ``labels`` (N,) and ``masks`` (N, Hp, Wp) zero-padded to the batch size."""
        h_pad, w_pad = images.tensor.shape[-2:]
        targets = []
        for inst in instances:
            gt_masks = inst.gt_masks
            gt_masks = getattr(gt_masks, "tensor", gt_masks)  # BitMasks or plain tensor
            padded = gt_masks.new_zeros((gt_masks.shape[0], h_pad, w_pad))
            padded[:, : gt_masks.shape[1], : gt_masks.shape[2]] = gt_masks
            targets.append({"labels": inst.gt_classes, "masks": padded})
        return targets

    # -------------------------------------------------------------------------------- inference
    def _thing_ids(self) -> List[int]:
        if self.metadata is None or not hasattr(self.metadata, "thing_dataset_id_to_contiguous_id"):
            raise ValueError(
                "panoptic/instance inference with panoptic_on needs metadata.thing_dataset_id_to_contiguous_id; "
                "set DATASETS.TRAIN to a registered panoptic dataset"
            )
        return list(self.metadata.thing_dataset_id_to_contiguous_id.values())

    def inference(self, outputs: Dict, batched_inputs: Sequence[Dict], images: ImageList) -> List[Dict]:
        mask_cls_results = outputs["pred_logits"]
        mask_pred_results = F.interpolate(
            outputs["pred_masks"], size=images.tensor.shape[-2:], mode="bilinear", align_corners=False
        )
        thing_ids = self._thing_ids() if self.panoptic_on else None
        results = []
        for mask_cls, mask_pred, inputs, image_size in zip(
            mask_cls_results, mask_pred_results, batched_inputs, images.image_sizes
        ):
            height = inputs.get("height", image_size[0])
            width = inputs.get("width", image_size[1])
            if self.postprocess_band_mb > 0:
                results.append(self._inference_in_bands(mask_cls, mask_pred, image_size, height, width, thing_ids))
                continue
            result = {}
            if self.sem_seg_postprocess_before_inference:
                mask_pred = sem_seg_postprocess(mask_pred, image_size, height, width)
                mask_cls = mask_cls.to(mask_pred)
            # The (Q, H, W) probabilities are shared by the enabled tasks (computed once).
            mask_prob = canonical_sigmoid(mask_pred) if self.sem_seg_postprocess_before_inference else None
            if self.semantic_on:
                sem_seg = semantic_inference(mask_cls, mask_pred, mask_prob)
                if not self.sem_seg_postprocess_before_inference:
                    sem_seg = sem_seg_postprocess(sem_seg, image_size, height, width)
                result["sem_seg"] = sem_seg
            if self.panoptic_on:
                result["panoptic_seg"] = panoptic_inference(
                    mask_cls,
                    mask_pred,
                    object_mask_threshold=self.object_mask_threshold,
                    overlap_threshold=self.overlap_threshold,
                    thing_ids=thing_ids,
                    require_mask_prob=self.panoptic_requires_mask_prob,
                    mask_prob=mask_prob,
                )
            if self.instance_on:
                result["instances"] = instance_inference(
                    mask_cls, mask_pred, test_topk_per_image=self.test_topk_per_image, thing_ids=thing_ids,
                    mask_prob=mask_prob,
                )
            results.append(result)
        return results

    def _inference_in_bands(self, mask_cls, mask_pred, image_size, height: int, width: int, thing_ids) -> Dict:
        """One image's results from its padded-size (Q, Hp, Wp) mask logits, the output resized
        band by band (``postprocess_in_bands``): the same results as the whole-image path."""
        cropped = mask_pred[:, : image_size[0], : image_size[1]]
        if not self.sem_seg_postprocess_before_inference:
            # semantic only: scores at the padded size, then resized (as sem_seg_postprocess does)
            scores = semantic_inference(mask_cls, mask_pred)[:, : image_size[0], : image_size[1]]
            rows = band_rows_for_budget(self.postprocess_band_mb * 2**20, scores.shape[0], width)
            sem_seg = resize_scores_in_bands(scores, height, width, band_rows=rows, compact=self.compact_outputs)
            return {"sem_seg_labels" if self.compact_outputs else "sem_seg": sem_seg}
        num_classes = mask_cls.shape[-1] - 1
        rows = band_rows_for_budget(self.postprocess_band_mb * 2**20, max(mask_pred.shape[0], num_classes), width)
        logger.debug("MaskFormer inference: %dx%d output in bands of %d rows", height, width, rows)
        return postprocess_in_bands(
            mask_cls,
            cropped,
            height,
            width,
            band_rows=rows,
            semantic=self.semantic_on,
            panoptic=dict(
                object_mask_threshold=self.object_mask_threshold,
                overlap_threshold=self.overlap_threshold,
                thing_ids=thing_ids,
                require_mask_prob=self.panoptic_requires_mask_prob,
            ) if self.panoptic_on else None,
            instance=dict(test_topk_per_image=self.test_topk_per_image, thing_ids=thing_ids)
            if self.instance_on else None,
            compact=self.compact_outputs,
        )
