"""FPN-style pixel decoders of MaskFormer: ``BasePixelDecoder`` and
``TransformerEncoderPixelDecoder`` (the same FPN with a DETR transformer encoder on the coarsest
feature map)."""
import logging
from typing import Callable, Dict, List, Optional, Tuple, Union

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d, ShapeSpec, get_norm
from torch import nn

from ...layers import PointwiseConv2d, PositionEmbeddingSine, TransformerEncoder, TransformerEncoderLayer
from .build import PIXEL_DECODER_REGISTRY

__all__ = ["BasePixelDecoder", "TransformerEncoderOnly", "TransformerEncoderPixelDecoder"]

logger = logging.getLogger(__name__)

NormArg = Optional[Union[str, Callable]]


def lateral_conv(in_channels: int, conv_dim: int, norm: NormArg) -> Conv2d:
    """1x1 projection of a backbone level to ``conv_dim`` (``adapter_i``)."""
    conv = PointwiseConv2d(in_channels, conv_dim, bias=norm == "", norm=get_norm(norm, conv_dim))
    weight_init.c2_xavier_fill(conv)
    return conv


def output_conv(in_channels: int, conv_dim: int, norm: NormArg) -> Conv2d:
    """3x3 conv + norm + ReLU producing one FPN level (``layer_i``)."""
    conv = Conv2d(in_channels, conv_dim, kernel_size=3, stride=1, padding=1, bias=norm == "",
                  norm=get_norm(norm, conv_dim), activation=F.relu)
    weight_init.c2_xavier_fill(conv)
    return conv


def add_fpn_level(module: nn.Module, idx: int, in_channels: int, conv_dim: int,
                  norm: NormArg) -> Tuple[Conv2d, Conv2d]:
    """Register the lateral 1x1 conv ``adapter_{idx+1}`` and the output 3x3 conv ``layer_{idx+1}``
    of FPN level ``idx`` (0 = finest) on ``module`` (the official key names); returns both."""
    lat, out = lateral_conv(in_channels, conv_dim, norm), output_conv(conv_dim, conv_dim, norm)
    module.add_module(f"adapter_{idx + 1}", lat)
    module.add_module(f"layer_{idx + 1}", out)
    return lat, out


def sorted_shapes(input_shape: Dict[str, ShapeSpec]) -> List[Tuple[str, ShapeSpec]]:
    """Backbone levels from the finest (smallest stride) to the coarsest."""
    return sorted(input_shape.items(), key=lambda kv: kv[1].stride)


def fpn_from_config(cfg, input_shape: Dict[str, ShapeSpec]) -> dict:
    return {
        "input_shape": {k: v for k, v in input_shape.items() if k in cfg.MODEL.SEM_SEG_HEAD.IN_FEATURES},
        "conv_dim": cfg.MODEL.SEM_SEG_HEAD.CONVS_DIM,
        "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
        "norm": cfg.MODEL.SEM_SEG_HEAD.NORM,
    }


class _TopDownFPN(nn.Module):
    """Shared top-down pass. Subclasses register ``adapter_i`` / ``layer_i`` (1-based, finest
    level first) and fill ``lateral_convs`` / ``output_convs`` in coarse-to-fine order, with
    ``lateral_convs[0] = None`` for the coarsest level."""

    maskformer_num_feature_levels = 3  # the transformer decoders always read 3 scales

    def _top(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        raise NotImplementedError

    def forward_features(self, features: Dict[str, torch.Tensor]):
        """
        Args:
            features: backbone maps by name, e.g. res2 (B, C2, H/4, W/4) ... res5 (B, C5, H/32, W/32).

        Returns:
            mask_features (B, mask_dim, H/4, W/4) for the finest input level;
            transformer_encoder_features (B, conv_dim, H/32, W/32) or None;
            multi_scale_features: the first 3 FPN outputs, coarse to fine, each (B, conv_dim, h, w).
        """
        multi_scale_features = []
        encoder_features = None
        y = None
        for idx, name in enumerate(self.in_features[::-1]):
            x = features[name]
            if idx == 0:
                y, encoder_features = self._top(x)
            else:
                cur = self.lateral_convs[idx](x)
                # Nearest upsampling, as in the FPN paper.
                y = self.output_convs[idx](cur + F.interpolate(y, size=cur.shape[-2:], mode="nearest"))
            if len(multi_scale_features) < self.maskformer_num_feature_levels:
                multi_scale_features.append(y)
        return self.mask_features(y), encoder_features, multi_scale_features

    def forward(self, features, targets=None):
        logger.warning("Calling forward() of a pixel decoder; use forward_features().")
        return self.forward_features(features)


@PIXEL_DECODER_REGISTRY.register()
class BasePixelDecoder(_TopDownFPN):
    """FPN over the backbone levels; the coarsest level goes through a 3x3 conv only.

    State-dict keys: ``adapter_i`` / ``layer_i`` for i = 1..L-1 (finest first), ``layer_L``,
    ``mask_features`` (3x3 conv to ``mask_dim``).
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, conv_dim: int, mask_dim: int,
                 norm: NormArg = None):
        super().__init__()
        shapes = sorted_shapes(input_shape)
        self.in_features = [k for k, _ in shapes]
        channels = [v.channels for _, v in shapes]
        lateral, outputs = [], []
        for idx, ch in enumerate(channels):
            if idx == len(channels) - 1:
                top = output_conv(ch, conv_dim, norm)
                self.add_module(f"layer_{idx + 1}", top)
                lateral.append(None)
                outputs.append(top)
            else:
                lat, out = add_fpn_level(self, idx, ch, conv_dim, norm)
                lateral.append(lat)
                outputs.append(out)
        # Coarse-to-fine order for the top-down pass (plain lists: modules are registered above).
        self.lateral_convs = lateral[::-1]
        self.output_convs = outputs[::-1]

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, stride=1, padding=1)
        weight_init.c2_xavier_fill(self.mask_features)

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        return fpn_from_config(cfg, input_shape)

    def _top(self, x):
        return self.output_convs[0](x), None


class TransformerEncoderOnly(nn.Module):
    """DETR encoder on one feature map: src (B, C, H, W), pos (B, C, H, W) -> (B, C, H, W)."""

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 dim_feedforward: int = 2048, dropout: float = 0.1, activation: str = "relu",
                 normalize_before: bool = False):
        super().__init__()
        layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        norm = nn.LayerNorm(d_model) if normalize_before else None
        self.encoder = TransformerEncoder(layer, num_encoder_layers, norm)
        self.d_model = d_model
        self.nhead = nhead
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)

    def forward(self, src: torch.Tensor, mask: Optional[torch.Tensor], pos_embed: torch.Tensor) -> torch.Tensor:
        b, c, h, w = src.shape
        src = src.flatten(2).transpose(1, 2)
        pos_embed = pos_embed.flatten(2).transpose(1, 2)
        if mask is not None:
            mask = mask.flatten(1)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        return memory.transpose(1, 2).reshape(b, c, h, w)


@PIXEL_DECODER_REGISTRY.register()
class TransformerEncoderPixelDecoder(_TopDownFPN):
    """``BasePixelDecoder`` whose coarsest level is projected (``input_proj``, 1x1), encoded by a
    DETR transformer encoder (``transformer``) and then passed through ``layer_L``.

    Returns the encoder output as ``transformer_encoder_features`` (the MaskFormer predictor's
    memory). State-dict order equals the official one: adapters/layers of the finer levels,
    ``mask_features``, ``input_proj``, ``transformer``, then ``layer_L``.
    """

    @configurable
    def __init__(self, input_shape: Dict[str, ShapeSpec], *, transformer_dropout: float,
                 transformer_nheads: int, transformer_dim_feedforward: int, transformer_enc_layers: int,
                 transformer_pre_norm: bool, conv_dim: int, mask_dim: int, norm: NormArg = None):
        super().__init__()
        shapes = sorted_shapes(input_shape)
        self.in_features = [k for k, _ in shapes]
        channels = [v.channels for _, v in shapes]
        lateral, outputs = [None], [None]  # slot 0 (coarsest) filled below
        for idx, ch in enumerate(channels[:-1]):
            lat, out = lateral_conv(ch, conv_dim, norm), output_conv(conv_dim, conv_dim, norm)
            self.add_module(f"adapter_{idx + 1}", lat)
            self.add_module(f"layer_{idx + 1}", out)
            lateral.insert(1, lat)
            outputs.insert(1, out)

        self.mask_dim = mask_dim
        self.mask_features = Conv2d(conv_dim, mask_dim, kernel_size=3, stride=1, padding=1)
        weight_init.c2_xavier_fill(self.mask_features)

        self.input_proj = Conv2d(channels[-1], conv_dim, kernel_size=1)
        weight_init.c2_xavier_fill(self.input_proj)
        self.transformer = TransformerEncoderOnly(
            d_model=conv_dim, dropout=transformer_dropout, nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward, num_encoder_layers=transformer_enc_layers,
            normalize_before=transformer_pre_norm,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        # Registered last so that the state-dict order equals the official checkpoints.
        top = output_conv(conv_dim, conv_dim, norm)
        self.add_module(f"layer_{len(channels)}", top)
        outputs[0] = top
        self.lateral_convs = lateral
        self.output_convs = outputs

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        ret = fpn_from_config(cfg, input_shape)
        ret["transformer_dropout"] = cfg.MODEL.MASK_FORMER.DROPOUT
        ret["transformer_nheads"] = cfg.MODEL.MASK_FORMER.NHEADS
        ret["transformer_dim_feedforward"] = cfg.MODEL.MASK_FORMER.DIM_FEEDFORWARD
        ret["transformer_enc_layers"] = cfg.MODEL.SEM_SEG_HEAD.TRANSFORMER_ENC_LAYERS
        ret["transformer_pre_norm"] = cfg.MODEL.MASK_FORMER.PRE_NORM
        return ret

    def _top(self, x):
        encoded = self.transformer(self.input_proj(x), None, self.pe_layer(x))
        return self.output_convs[0](encoded), encoded
