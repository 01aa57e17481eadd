"""Benchmark adapters: one object per implementation, each exposing the same three callables
on the same synthetic batch.

* `network()`: normalise + pad + network forward to raw per-layer outputs (class and mask logits
  for mask classification): the work both implementations share, used for the ours/peer ratio.
* `end_to_end()`: what a user calls at inference time (detectron2 `model(batched_inputs)` with
  post-processing to the original resolution; Hugging Face forward + image-processor
  post-processing). Only where meaningful.
* `train_step()`: forward + matching + loss + backward + AdamW step.

Inference runs under `torch.inference_mode()`. Both sides see the same uint8 images, the same
targets and (for peers) identical weights converted from one seeded initialisation.
"""
from typing import Callable, Dict, List, Optional, Tuple

import torch

__all__ = ["SyntheticBatch", "make_batch", "build_d2_cfg_for_preset", "D2MaskFormerBench",
           "HFMask2FormerBench", "build_mask2former_pair", "D2GenericBench"]


class SyntheticBatch:
    """Seeded uint8 images (B, 3, H, W) and per-image targets: `labels` int64 (N,), `masks`
    bool (N, H, W) (axis-aligned rectangles and ellipses, some overlapping)."""

    def __init__(self, images: torch.Tensor, labels: List[torch.Tensor], masks: List[torch.Tensor]):
        self.images = images
        self.labels = labels
        self.masks = masks

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]


def make_batch(batch: int, size: Tuple[int, int], num_classes: int, seed: int = 0,
               objects_per_image: int = 5) -> SyntheticBatch:
    g = torch.Generator().manual_seed(seed)
    h, w = size
    images = torch.randint(0, 256, (batch, 3, h, w), generator=g, dtype=torch.uint8)
    ys = torch.arange(h)[:, None].float()
    xs = torch.arange(w)[None, :].float()
    labels, masks = [], []
    for _ in range(batch):
        ms = []
        for k in range(objects_per_image):
            cy, cx = (torch.rand(2, generator=g) * torch.tensor([h, w])).tolist()
            ry, rx = (torch.rand(2, generator=g) * torch.tensor([h, w]) * 0.3 + 4).tolist()
            if k % 2 == 0:
                m = ((ys - cy).abs() <= ry) & ((xs - cx).abs() <= rx)
            else:
                m = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
            ms.append(m)
        masks.append(torch.stack(ms))
        labels.append(torch.randint(0, num_classes, (objects_per_image,), generator=g))
    return SyntheticBatch(images, labels, masks)


def build_d2_cfg_for_preset(preset, extra_options=()):
    """The config of a preset: ``build_cfg(base_config, options + extra_options)`` on CPU,
    without weights."""
    from segmentation_core.config import build_cfg

    if preset.family not in ("maskformer", "segmenter", "restr"):
        raise ValueError(f"preset family {preset.family!r} has no model config")
    cfg = build_cfg(preset.base_config, list(preset.options) + list(extra_options))
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.WEIGHTS = ""
    return cfg


def _metadata_name(cfg) -> str:
    """A registered dataset name whose metadata serves panoptic/instance inference: the
    config's own when registered, else a synthetic one with the config's class count."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if cfg.DATASETS.TRAIN and cfg.DATASETS.TRAIN[0] in DatasetCatalog.list():
        meta = MetadataCatalog.get(cfg.DATASETS.TRAIN[0])
        if hasattr(meta, "thing_dataset_id_to_contiguous_id"):
            return cfg.DATASETS.TRAIN[0]
    n = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
    name = f"_benchmark_synthetic_{n}"
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "thing_dataset_id_to_contiguous_id"):
        things = min(80, n // 2 + 1)
        meta.set(thing_classes=[f"thing{i}" for i in range(things)],
                 stuff_classes=[f"class{i}" for i in range(n)],
                 thing_dataset_id_to_contiguous_id={i: i for i in range(things)},
                 stuff_dataset_id_to_contiguous_id={i: i for i in range(n)},
                 ignore_label=255, label_divisor=1000)
    return name


def _train_step_closure(model, inputs, opt) -> Callable[[], float]:
    """One detectron2-style training step (loss dict -> sum -> backward -> step) as a closure."""

    def run():
        model.train()
        losses = model(inputs)
        loss = sum(losses.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.eval()
        return float(loss.detach())

    return run


def _adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5,
                             weight_decay=0.05)


class D2MaskFormerBench:
    """Our detectron2 MaskFormer / Mask2Former (`maskformer_d2`).

    ``only_task`` ("semantic" | "panoptic" | "instance"): end-to-end inference produces only
    that output, as the peer's post-processing does (the official COCO panoptic configs turn
    on all three; comparing three outputs with one would not be the same work).
    """

    impl = "ours"

    def __init__(self, cfg, state_dict: Optional[Dict[str, torch.Tensor]] = None,
                 only_task: Optional[str] = None):
        from detectron2.modeling import build_model

        import maskformer_d2  # noqa: F401  (registers the model)

        cfg = cfg.clone()
        cfg.defrost()
        cfg.DATASETS.TRAIN = (_metadata_name(cfg),)
        self.cfg = cfg
        self.model = build_model(cfg)
        if state_dict is not None:
            self.model.load_state_dict(state_dict, strict=True)
        self.model.eval()
        if only_task is not None:
            if only_task not in ("semantic", "panoptic", "instance"):
                raise ValueError(f"only_task must be semantic, panoptic or instance; got {only_task!r}")
            self.model.semantic_on = only_task == "semantic"
            self.model.panoptic_on = only_task == "panoptic"
            self.model.instance_on = only_task == "instance"
        self.num_classes = cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES
        self._optimizer = None

    def _inputs(self, batch: SyntheticBatch, with_targets: bool) -> List[Dict]:
        from detectron2.structures import Instances

        out = []
        for i in range(batch.batch_size):
            img = batch.images[i]
            d = {"image": img, "height": img.shape[1], "width": img.shape[2]}
            if with_targets:
                inst = Instances(tuple(img.shape[1:]))
                inst.gt_classes = batch.labels[i]
                inst.gt_masks = batch.masks[i]
                d["instances"] = inst
            out.append(d)
        return out

    def network_module(self) -> torch.nn.Module:
        """(B, 3, H, W) uint8/float pixels -> (pred_logits, pred_masks): for FLOP counting."""
        model = self.model

        class _Net(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.m = model

            def forward(self, images):
                x = (images.float() - self.m.pixel_mean) / self.m.pixel_std
                out = self.m.sem_seg_head(self.m.backbone(x))
                return out["pred_logits"], out["pred_masks"]

        return _Net().eval()

    def network(self, batch: SyntheticBatch, inference_mode: bool = True) -> Callable[[], object]:
        """``inference_mode=False``: under ``torch.no_grad`` (for dispatcher-level op counting)."""
        from detectron2.structures import ImageList

        model = self.model
        images = list(batch.images)
        grad_mode = torch.inference_mode if inference_mode else torch.no_grad

        def run():
            model.eval()
            with grad_mode():
                xs = [(x.float() - model.pixel_mean) / model.pixel_std for x in images]
                il = ImageList.from_tensors(xs, model.size_divisibility)
                # the model's inference network: MODEL.INFERENCE_DTYPE applies (float32: the
                # head on the backbone, nothing else)
                return model.network(il.tensor)

        return run

    def end_to_end(self, batch: SyntheticBatch) -> Callable[[], object]:
        model = self.model
        inputs = self._inputs(batch, with_targets=False)

        def run():
            model.eval()
            with torch.inference_mode():
                return model(inputs)

        return run

    def train_step(self, batch: SyntheticBatch) -> Callable[[], object]:
        model = self.model
        inputs = self._inputs(batch, with_targets=True)
        if self._optimizer is None:
            self._optimizer = _adamw(model)
        return _train_step_closure(model, inputs, self._optimizer)


class HFMask2FormerBench:
    """Hugging Face `transformers` `Mask2FormerForUniversalSegmentation` (the peer)."""

    impl = "peer"

    def __init__(self, hf_config, state_dict: Optional[Dict[str, torch.Tensor]] = None,
                 pixel_mean=(123.675, 116.28, 103.53), pixel_std=(58.395, 57.12, 57.375),
                 task: str = "semantic"):
        from transformers import Mask2FormerForUniversalSegmentation

        self.model = Mask2FormerForUniversalSegmentation(hf_config)
        if state_dict is not None:
            self.model.load_state_dict(state_dict, strict=True)
        self.model.eval()
        self.mean = torch.tensor(pixel_mean).view(3, 1, 1)
        self.std = torch.tensor(pixel_std).view(3, 1, 1)
        self.task = task
        self._optimizer = None
        self._processor = None

    def _pixels(self, batch: SyntheticBatch) -> torch.Tensor:
        return (batch.images.float() - self.mean) / self.std

    def network(self, batch: SyntheticBatch) -> Callable[[], object]:
        model, images, mean, std = self.model, batch.images, self.mean, self.std

        def run():
            model.eval()
            with torch.inference_mode():
                return model(pixel_values=(images.float() - mean) / std)

        return run

    def end_to_end(self, batch: SyntheticBatch) -> Callable[[], object]:
        from transformers import Mask2FormerImageProcessor

        if self._processor is None:
            self._processor = Mask2FormerImageProcessor()
        proc, model, images, mean, std = self._processor, self.model, batch.images, self.mean, self.std
        sizes = [tuple(img.shape[1:]) for img in images]
        post = {"semantic": proc.post_process_semantic_segmentation,
                "panoptic": proc.post_process_panoptic_segmentation,
                "instance": proc.post_process_instance_segmentation}[self.task]

        def run():
            model.eval()
            with torch.inference_mode():
                out = model(pixel_values=(images.float() - mean) / std)
                return post(out, target_sizes=sizes)

        return run

    def train_step(self, batch: SyntheticBatch) -> Callable[[], object]:
        model = self.model
        pixels = self._pixels(batch)
        mask_labels = [m.float() for m in batch.masks]
        class_labels = list(batch.labels)
        if self._optimizer is None:
            self._optimizer = _adamw(model)
        opt = self._optimizer

        def run():
            model.train()
            out = model(pixel_values=pixels, mask_labels=mask_labels, class_labels=class_labels)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            opt.step()
            model.eval()
            return float(out.loss.detach())

        return run


def build_mask2former_pair(cfg, seed: int = 0):
    """(hf_config, hf_state_dict, our_state_dict): one seeded Hugging Face initialisation and
    its conversion, so that both implementations run identical weights."""
    from transformers import Mask2FormerForUniversalSegmentation

    from tools.convert.hf_mask2former import convert_hf_to_d2, d2_cfg_to_hf_config

    hf_config = d2_cfg_to_hf_config(cfg)
    torch.manual_seed(seed)
    hf = Mask2FormerForUniversalSegmentation(hf_config)
    hf_sd = {k: v.clone() for k, v in hf.state_dict().items()}
    return hf_config, hf_sd, convert_hf_to_d2(hf_sd)


def task_of(cfg) -> str:
    """The Hugging Face post-processing matching the detectron2 config's enabled outputs."""
    t = cfg.MODEL.MASK_FORMER.TEST
    if t.PANOPTIC_ON:
        return "panoptic"
    if t.INSTANCE_ON and not t.SEMANTIC_ON:
        return "instance"
    return "semantic"


class D2GenericBench:
    """Any other detectron2 model of ours (Segmenter, ReSTR): `model(batched_inputs)`.

    `make_inputs(batch, with_targets)` builds the model's batched inputs."""

    impl = "ours"

    def __init__(self, cfg, make_inputs, imports=("restr_d2",)):
        import importlib

        from detectron2.modeling import build_model

        for name in imports:
            importlib.import_module(name)
        self.cfg = cfg
        self.model = build_model(cfg).eval()
        self.make_inputs = make_inputs
        self._optimizer = None

    def end_to_end(self, batch: SyntheticBatch, inference_mode: bool = True) -> Callable[[], object]:
        model, inputs = self.model, self.make_inputs(batch, False)
        grad_mode = torch.inference_mode if inference_mode else torch.no_grad

        def run():
            model.eval()
            with grad_mode():
                return model(inputs)

        return run

    network = end_to_end

    def train_step(self, batch: SyntheticBatch) -> Callable[[], object]:
        model, inputs = self.model, self.make_inputs(batch, True)
        if self._optimizer is None:
            self._optimizer = _adamw(model)
        return _train_step_closure(model, inputs, self._optimizer)
