"""MaskFormer's predictor: a DETR transformer decoder reading one feature map."""
from typing import Dict, List, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import nn

from ...layers import MLP, PositionEmbeddingSine, Transformer
from .build import TRANSFORMER_DECODER_REGISTRY

__all__ = ["StandardTransformerDecoder"]


@TRANSFORMER_DECODER_REGISTRY.register()
class StandardTransformerDecoder(nn.Module):
    """DETR-style decoder (MaskFormer's ``TransformerPredictor``).

    ``num_queries`` learned query positions attend to one feature map x (B, C_in, H, W) (after an
    optional 1x1 ``input_proj`` to ``hidden_dim``). Each query gives class logits (B, Q, K+1) and
    mask logits (B, Q, H', W') = mask_embed(query) . mask_features (B, mask_dim, H', W').
    With ``deep_supervision`` every decoder layer's prediction is returned (last one as
    ``pred_*``, the others in ``aux_outputs``).
    """

    @configurable
    def __init__(
        self,
        in_channels: int,
        mask_classification: bool = True,
        *,
        num_classes: int,
        hidden_dim: int,
        num_queries: int,
        nheads: int,
        dropout: float,
        dim_feedforward: int,
        enc_layers: int,
        dec_layers: int,
        pre_norm: bool,
        deep_supervision: bool,
        mask_dim: int,
        enforce_input_project: bool,
    ):
        super().__init__()
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.transformer = Transformer(
            d_model=hidden_dim, dropout=dropout, nhead=nheads, dim_feedforward=dim_feedforward,
            num_encoder_layers=enc_layers, num_decoder_layers=dec_layers, normalize_before=pre_norm,
            return_intermediate_dec=deep_supervision,
        )
        self.num_queries = num_queries
        self.query_embed = nn.Embedding(num_queries, hidden_dim)
        if in_channels != hidden_dim or enforce_input_project:
            self.input_proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
            weight_init.c2_xavier_fill(self.input_proj)
        else:
            self.input_proj = nn.Sequential()
        self.aux_loss = deep_supervision
        if mask_classification:
            self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels, mask_classification):
        mf = cfg.MODEL.MASK_FORMER
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dropout": mf.DROPOUT,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            "enc_layers": mf.ENC_LAYERS,
            "dec_layers": mf.DEC_LAYERS,
            "pre_norm": mf.PRE_NORM,
            "deep_supervision": mf.DEEP_SUPERVISION,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
        }

    def forward(self, x: torch.Tensor, mask_features: torch.Tensor, mask: Optional[torch.Tensor] = None,
                aux_masks: bool = True):
        """x (B, C_in, H, W); mask_features (B, mask_dim, H', W'); mask: optional bool padding
        mask (B, H0, W0), resized to (H, W). ``aux_masks=False`` (the inference network, which
        reads only the last layer): ``aux_outputs`` carry ``pred_logits`` only, and the earlier
        layers' (B, Q, H', W') masks are not computed (the last one's are the same bits)."""
        if mask is not None:
            mask = F.interpolate(mask[None].float(), size=x.shape[-2:]).to(torch.bool)[0]
        pos = self.pe_layer(x, mask)
        hs, _ = self.transformer(self.input_proj(x), mask, self.query_embed.weight, pos)  # (L, B, Q, C)

        out = {}
        outputs_class = None
        if self.mask_classification:
            outputs_class = self.class_embed(hs)
            out["pred_logits"] = outputs_class[-1]
        if self.aux_loss and aux_masks:
            outputs_masks = torch.einsum("lbqc,bchw->lbqhw", self.mask_embed(hs), mask_features)
            out["pred_masks"] = outputs_masks[-1]
            out["aux_outputs"] = self._set_aux_loss(outputs_class, outputs_masks)
        else:
            out["pred_masks"] = torch.einsum("bqc,bchw->bqhw", self.mask_embed(hs[-1]), mask_features)
            if self.aux_loss:
                out["aux_outputs"] = ([{"pred_logits": a} for a in outputs_class[:-1]] if self.mask_classification
                                      else [{} for _ in range(len(hs) - 1)])
        return out

    def _set_aux_loss(self, outputs_class, outputs_masks) -> List[Dict[str, torch.Tensor]]:
        if self.mask_classification:
            return [{"pred_logits": a, "pred_masks": b} for a, b in zip(outputs_class[:-1], outputs_masks[:-1])]
        return [{"pred_masks": b} for b in outputs_masks[:-1]]
