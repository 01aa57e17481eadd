"""ONNX export of MaskFormer / Mask2Former (``segmentation_core.export``).

Graph: ``images`` (B, 3, H, W), normalised with ``MODEL.PIXEL_MEAN/STD`` and zero-padded to a
multiple of the size divisibility -> ``pred_logits`` (B, Q, K + 1) and ``pred_masks``
(B, Q, H / 4, W / 4), the raw outputs every task (semantic, panoptic, instance) is computed
from; B, H and W are dynamic. The meta-arch's ``inference`` does the rest in Python.

Export-friendly path: the default ``"gather"`` deformable-attention core is an
``embedding_bag`` that ONNX expresses as a Loop (6x slower in onnxruntime, and invalid with
dynamic sizes), so ``prepare_for_export`` switches every ``MSDeformAttn`` to the ``"pytorch"``
(``grid_sample``) core, which exports as ``GridSample`` (same weights; outputs equal up to
float summation order, ~1e-6). The switch is logged.
"""
import logging
from typing import Dict, List, Tuple

import torch
from torch import nn

from segmentation_core.export.registry import ExportSpec, OrtRun, register_export_spec

from .layers.ms_deform_attn import MSDeformAttn

__all__ = ["MaskFormerExportSpec", "EXPORT_MSDEFORMATTN_IMPL"]

logger = logging.getLogger(__name__)

EXPORT_MSDEFORMATTN_IMPL = "pytorch"


class _MaskFormerGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.backbone = model.backbone
        self.sem_seg_head = model.sem_seg_head

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        outputs = self.sem_seg_head(self.backbone(images))
        return outputs["pred_logits"], outputs["pred_masks"]


@register_export_spec("MaskFormer")
class MaskFormerExportSpec(ExportSpec):
    input_names = ("images",)
    output_names = ("pred_logits", "pred_masks")

    def __init__(self, model, cfg):
        super().__init__(model, cfg)
        if model.size_divisibility <= 0 or model.size_divisibility % 32:
            raise ValueError(
                f"ONNX export of MaskFormer needs a size divisibility that is a multiple of 32 (got "
                f"{model.size_divisibility}): set MODEL.MASK_FORMER.SIZE_DIVISIBILITY 32, so that "
                "the graph's input sizes are what PyTorch pads to"
            )

    @property
    def size_multiple(self) -> int:
        return int(self.model.size_divisibility)

    def prepare_for_export(self):
        switched = {n: m.impl for n, m in self.model.named_modules() if isinstance(m, MSDeformAttn)
                    and m.impl != EXPORT_MSDEFORMATTN_IMPL}
        for name in switched:
            self.model.get_submodule(name).set_impl(EXPORT_MSDEFORMATTN_IMPL)

        def restore():
            for name, impl in switched.items():
                self.model.get_submodule(name).set_impl(impl)

        if switched:
            logger.info(
                "ONNX export: MSDeformAttn core -> %r (grid_sample, exports as GridSample) in %d "
                "modules (the 'gather' core's embedding_bag exports as a slow ONNX Loop)",
                EXPORT_MSDEFORMATTN_IMPL, len(switched),
            )
        return restore

    def graph_module(self) -> nn.Module:
        return _MaskFormerGraph(self.model)

    def example_inputs(self, batch: int, height: int, width: int):
        return (torch.randn(batch, 3, height, width),)

    def dynamic_shapes(self) -> Dict[str, Dict[int, object]]:
        Dim, m = torch.export.Dim, self.size_multiple
        return {"images": {0: Dim("batch", min=1, max=1024), 2: m * Dim("height_blocks", min=1, max=1024),
                           3: m * Dim("width_blocks", min=1, max=1024)}}

    def dynamic_axes_description(self):
        return {"images": ("batch", "3", f"height ({self.size_multiple}*k)", f"width ({self.size_multiple}*k)")}

    def run(self, ort_run: OrtRun, batched_inputs: List[Dict]) -> List[Dict]:
        images = self.model.preprocess_images(batched_inputs)
        self.check_size(*images.tensor.shape[-2:])
        logits, masks = ort_run({"images": images.tensor.float().cpu().numpy()})
        outputs = {"pred_logits": torch.from_numpy(logits), "pred_masks": torch.from_numpy(masks)}
        return self.model.inference(outputs, batched_inputs, images)
