"""Mask2Former's pixel decoder: a multi-scale deformable-attention transformer encoder over the
coarser backbone levels, plus FPN levels down to ``common_stride``."""
import logging
import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import ShapeSpec
from torch import nn

from segmentation_core.acceleration import capturing_graph

from ...layers import MSDeformAttn, PointwiseConv2d, PositionEmbeddingSine, get_activation_fn
from ...layers.transformer import clone_layers
from .build import PIXEL_DECODER_REGISTRY
from .fpn import add_fpn_level, sorted_shapes

__all__ = [
    "MSDeformAttnTransformerEncoderLayer",
    "MSDeformAttnTransformerEncoder",
    "MSDeformAttnTransformerEncoderOnly",
    "MSDeformAttnPixelDecoder",
]

logger = logging.getLogger(__name__)


class ReluLinear(torch.autograd.Function):
    """``F.linear(relu(pre), weight, bias)`` for training, with both ReLUs in place: forward
    applies it to ``pre`` itself (the caller's fresh ``linear1`` result, which nothing else
    reads; autograd's ``relu_`` did the same), backward masks the product ``grad @ weight`` in
    place instead of writing the masked gradient into a new (rows, d_ffn) buffer (autograd's
    ``threshold_backward``: ~20-40 ms of a 2 x 512 x 512 step per encoder layer). Same
    operations as autograd's, so the same gradients bit for bit (tested)."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
        hidden = pre.relu_()
        ctx.save_for_backward(hidden, weight)
        ctx.has_bias = bias is not None
        return F.linear(hidden, weight, bias)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        hidden, weight = ctx.saved_tensors
        grad_pre = grad_w = grad_b = None
        rows = grad_out.reshape(-1, grad_out.shape[-1])
        if ctx.needs_input_grad[1]:
            grad_w = rows.t().mm(hidden.reshape(-1, hidden.shape[-1]))
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = rows.sum(0)
        if ctx.needs_input_grad[0]:
            grad_pre = grad_out.matmul(weight)
            torch.ops.aten.threshold_backward.grad_input(grad_pre, hidden, 0, grad_input=grad_pre)
        return grad_pre, grad_w, grad_b


class MSDeformAttnTransformerEncoderLayer(nn.Module):
    """Deformable self-attention + FFN, post-norm. src/pos (B, S, C) -> (B, S, C)."""

    def __init__(self, d_model: int = 256, d_ffn: int = 1024, dropout: float = 0.1,
                 activation: str = "relu", n_levels: int = 4, n_heads: int = 8, n_points: int = 4,
                 impl: str = "gather"):
        super().__init__()
        self.self_attn = MSDeformAttn(d_model, n_levels, n_heads, n_points, impl=impl)
        self.dropout1 = nn.Dropout(dropout)
        self.norm1 = nn.LayerNorm(d_model)
        self.linear1 = nn.Linear(d_model, d_ffn)
        self.activation = get_activation_fn(activation)
        self.dropout2 = nn.Dropout(dropout)
        self.linear2 = nn.Linear(d_ffn, d_model)
        self.dropout3 = nn.Dropout(dropout)
        self.norm2 = nn.LayerNorm(d_model)

    def forward(self, src, pos, reference_points, spatial_shapes, level_start_index, padding_mask=None,
                ffn_buffer: Optional[torch.Tensor] = None):
        """ffn_buffer: optional (B * S, d_ffn) float32 tensor the FFN's hidden layer is written
        into (inference with ReLU only; the encoder shares one across its layers)."""
        attn = self.self_attn(src + pos, reference_points, src, spatial_shapes, level_start_index, padding_mask)
        src = self.norm1(src + self.dropout1(attn))
        return self.norm2(src + self.dropout3(self._ffn(src, ffn_buffer)))

    def _ffn(self, src: torch.Tensor, ffn_buffer: Optional[torch.Tensor]) -> torch.Tensor:
        """linear2(dropout2(activation(linear1(src)))): (B, S, C) -> (B, S, C)."""
        if ffn_buffer is not None:
            # what linear1 computes (addmm of the flattened rows), into memory already faulted
            # in: a fresh (B * S, d_ffn) result costs ~8 ms of page faults per layer at 512x512
            hidden = torch.addmm(self.linear1.bias, src.reshape(-1, src.shape[-1]), self.linear1.weight.t(),
                                 out=ffn_buffer).relu_().view(*src.shape[:-1], -1)
        elif (self.activation is F.relu and self.training and torch.is_grad_enabled() and self.dropout2.p == 0.0
              and not torch.is_autocast_enabled(src.device.type) and not capturing_graph()):
            # training (no dropout between the two linears): ReLU and its backward in place,
            # on the 2-D rows (see the branch below for why not on a 3-D view); linear2 runs
            # inside ReluLinear, so its module hooks do not (as the Swin MLP's fc2 in GeluLinear)
            pre = self.linear1(src.reshape(-1, src.shape[-1]))
            return ReluLinear.apply(pre, self.linear2.weight, self.linear2.bias).view(*src.shape[:-1], -1)
        elif self.activation is F.relu:
            # ReLU in place (autograd allows it: the linear does not keep its output for
            # backward, ReLU keeps its own): one (B, S, d_ffn) buffer fewer to allocate. On the
            # 2-D (B * S, d_ffn) result, not on the 3-D view a 3-D linear returns: in place on a
            # view, autograd's backward copies the whole gradient twice and fills a zero buffer
            # (CopySlices; ~100 ms per layer of a 2 x 512 x 512 training step, same numbers).
            # Through the module, so its forward hooks still see it.
            hidden = self.linear1(src.reshape(-1, src.shape[-1])).relu_().view(*src.shape[:-1], -1)
        else:
            hidden = self.activation(self.linear1(src))
        return self.linear2(self.dropout2(hidden))


class MSDeformAttnTransformerEncoder(nn.Module):
    def __init__(self, encoder_layer: nn.Module, num_layers: int):
        super().__init__()
        self.layers = clone_layers(encoder_layer, num_layers)
        self.num_layers = num_layers

    @staticmethod
    def get_reference_points(spatial_shapes: Sequence[Tuple[int, int]], valid_ratios: torch.Tensor,
                             device) -> torch.Tensor:
        """Pixel centres of every level, normalised to the valid region.

        valid_ratios: (B, L, 2) as (w, h) fractions. Returns (B, S, L, 2) in (x, y) order.
        """
        refs = []
        for lvl, (h, w) in enumerate(spatial_shapes):
            # arange + 0.5 equals linspace(0.5, h - 0.5, h) bit for bit (half-integers are
            # exact in float32; checked for h < 2000 in tests) and, unlike linspace, exports to
            # ONNX with a symbolic h (linspace's length was frozen to the example input's).
            ref_y, ref_x = torch.meshgrid(
                torch.arange(h, dtype=torch.float32, device=device) + 0.5,
                torch.arange(w, dtype=torch.float32, device=device) + 0.5,
                indexing="ij",
            )
            ref_y = ref_y.reshape(-1)[None] / (valid_ratios[:, None, lvl, 1] * h)
            ref_x = ref_x.reshape(-1)[None] / (valid_ratios[:, None, lvl, 0] * w)
            refs.append(torch.stack((ref_x, ref_y), -1))
        reference_points = torch.cat(refs, 1)
        return reference_points[:, :, None] * valid_ratios[:, None]

    def forward(self, src, spatial_shapes, level_start_index, valid_ratios, pos=None, padding_mask=None):
        reference_points = self.get_reference_points(spatial_shapes, valid_ratios, device=src.device)
        ffn_buffer = self._shared_ffn_buffer(src)
        out = src
        for layer in self.layers:
            out = layer(out, pos, reference_points, spatial_shapes, level_start_index, padding_mask,
                        ffn_buffer=ffn_buffer)
        return out

    def _shared_ffn_buffer(self, src: torch.Tensor) -> Optional[torch.Tensor]:
        """One (B * S, d_ffn) buffer for every layer's FFN hidden layer, at inference: eval mode
        (no dropout), eager, no autograd, no autocast, float32, ReLU FFNs. None otherwise (each
        layer allocates its own)."""
        first = self.layers[0] if len(self.layers) else None
        if (first is None or self.training or torch.is_grad_enabled() or src.dtype != torch.float32
                or torch.is_autocast_enabled(src.device.type)
                or first.activation is not F.relu or first.linear1.weight.dtype != torch.float32
                or capturing_graph()):
            return None
        return src.new_empty(src.shape[0] * src.shape[1], first.linear1.out_features)


class MSDeformAttnTransformerEncoderOnly(nn.Module):
    """Deformable encoder over L maps: inputs lists of (B, C, H_l, W_l) maps and position
    encodings; returns memory (B, S, C), spatial shapes [(H_l, W_l)] and level start indices (L,)."""

    def __init__(self, d_model: int = 256, nhead: int = 8, num_encoder_layers: int = 6,
                 dim_feedforward: int = 1024, dropout: float = 0.1, activation: str = "relu",
                 num_feature_levels: int = 4, enc_n_points: int = 4, impl: str = "gather"):
        super().__init__()
        self.d_model = d_model
        self.nhead = nhead
        layer = MSDeformAttnTransformerEncoderLayer(d_model, dim_feedforward, dropout, activation,
                                                    num_feature_levels, nhead, enc_n_points, impl=impl)
        self.encoder = MSDeformAttnTransformerEncoder(layer, num_encoder_layers)
        self.level_embed = nn.Parameter(torch.empty(num_feature_levels, d_model))
        self._reset_parameters()

    def _reset_parameters(self):
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        for m in self.modules():
            if isinstance(m, MSDeformAttn):
                m._reset_parameters()
        nn.init.normal_(self.level_embed)

    def forward(self, srcs: List[torch.Tensor], pos_embeds: List[torch.Tensor]):
        # Padding is not masked (as in Mask2Former): every valid ratio is 1.
        # sizes, not int(): under ONNX/torch.export they stay symbolic (dynamic H, W)
        spatial_shapes = [(x.shape[2], x.shape[3]) for x in srcs]
        src_flat = torch.cat([x.flatten(2).transpose(1, 2) for x in srcs], 1)
        pos_flat = torch.cat([
            p.flatten(2).transpose(1, 2) + self.level_embed[lvl].view(1, 1, -1)
            for lvl, p in enumerate(pos_embeds)
        ], 1)
        sizes = torch.tensor([h * w for h, w in spatial_shapes], device=src_flat.device)
        level_start_index = torch.cat((sizes.new_zeros(1), sizes.cumsum(0)[:-1]))
        valid_ratios = src_flat.new_ones(src_flat.shape[0], len(srcs), 2)
        memory = self.encoder(src_flat, spatial_shapes, level_start_index, valid_ratios, pos_flat, None)
        return memory, spatial_shapes, level_start_index


@PIXEL_DECODER_REGISTRY.register()
class MSDeformAttnPixelDecoder(nn.Module):
    """Mask2Former pixel decoder.

    The ``transformer_in_features`` (e.g. res3..res5) are projected (``input_proj``: 1x1 conv +
    GroupNorm(32)), encoded jointly by a deformable-attention encoder, and the finer backbone
    levels down to ``common_stride`` are added FPN-style (``adapter_i``/``layer_i``, bilinear
    upsampling). ``mask_features`` is a 1x1 conv on the finest level.

    Note: like the official code, the encoder takes its heads and dropout from the transformer
    decoder settings (``MODEL.MASK_FORMER.NHEADS`` / ``DROPOUT``), uses an FFN of 1024 and 4
    sampling points; ``DEFORMABLE_TRANSFORMER_ENCODER_N_POINTS/N_HEADS`` are not read.
    """

    @configurable
    def __init__(
        self,
        input_shape: Dict[str, ShapeSpec],
        *,
        transformer_dropout: float,
        transformer_nheads: int,
        transformer_dim_feedforward: int,
        transformer_enc_layers: int,
        conv_dim: int,
        mask_dim: int,
        norm: Optional[Union[str, Callable]] = None,
        transformer_in_features: List[str],
        common_stride: int,
        transformer_n_points: int = 4,
        msdeformattn_impl: str = "gather",
    ):
        super().__init__()
        missing = [f for f in transformer_in_features if f not in input_shape]
        if missing:
            raise ValueError(f"transformer_in_features {missing} are not among the input features "
                             f"{sorted(input_shape)} (check DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES "
                             "and SEM_SEG_HEAD.IN_FEATURES).")
        shapes = sorted_shapes(input_shape)
        self.in_features = [k for k, _ in shapes]
        self.feature_strides = [v.stride for _, v in shapes]
        self.feature_channels = [v.channels for _, v in shapes]

        t_shapes = [(k, v) for k, v in shapes if k in transformer_in_features]
        self.transformer_in_features = [k for k, _ in t_shapes]
        t_channels = [v.channels for _, v in t_shapes]
        self.transformer_feature_strides = [v.stride for _, v in t_shapes]
        self.transformer_num_feature_levels = len(t_shapes)

        # One projection per encoder level, coarsest first (the order the encoder sees them).
        self.input_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(ch, conv_dim, kernel_size=1), nn.GroupNorm(32, conv_dim))
            for ch in t_channels[::-1]
        )
        for proj in self.input_proj:
            nn.init.xavier_uniform_(proj[0].weight, gain=1)
            nn.init.zeros_(proj[0].bias)

        logger.info(f"MSDeformAttnPixelDecoder: MSDeformAttn implementation = {msdeformattn_impl!r}")
        self.transformer = MSDeformAttnTransformerEncoderOnly(
            d_model=conv_dim, dropout=transformer_dropout, nhead=transformer_nheads,
            dim_feedforward=transformer_dim_feedforward, num_encoder_layers=transformer_enc_layers,
            num_feature_levels=self.transformer_num_feature_levels, enc_n_points=transformer_n_points,
            impl=msdeformattn_impl,
        )
        self.pe_layer = PositionEmbeddingSine(conv_dim // 2, normalize=True)

        self.mask_dim = mask_dim
        self.mask_features = PointwiseConv2d(conv_dim, mask_dim)
        weight_init.c2_xavier_fill(self.mask_features)

        self.maskformer_num_feature_levels = 3  # the transformer decoder always reads 3 scales
        self.common_stride = common_stride
        self.num_fpn_levels = int(math.log2(min(self.transformer_feature_strides)) - math.log2(common_stride))
        lateral, outputs = [], []
        for idx, ch in enumerate(self.feature_channels[: self.num_fpn_levels]):
            lat, out = add_fpn_level(self, idx, ch, conv_dim, norm)
            lateral.append(lat)
            outputs.append(out)
        # Coarse-to-fine order for the top-down pass.
        self.lateral_convs = lateral[::-1]
        self.output_convs = outputs[::-1]

    @classmethod
    def from_config(cls, cfg, input_shape: Dict[str, ShapeSpec]):
        head = cfg.MODEL.SEM_SEG_HEAD
        return {
            "input_shape": {k: v for k, v in input_shape.items() if k in head.IN_FEATURES},
            "conv_dim": head.CONVS_DIM,
            "mask_dim": head.MASK_DIM,
            "norm": head.NORM,
            "transformer_dropout": cfg.MODEL.MASK_FORMER.DROPOUT,
            "transformer_nheads": cfg.MODEL.MASK_FORMER.NHEADS,
            # Official Mask2Former hard-codes the deformable encoder's FFN to 1024.
            "transformer_dim_feedforward": 1024,
            "transformer_enc_layers": head.TRANSFORMER_ENC_LAYERS,
            "transformer_in_features": head.DEFORMABLE_TRANSFORMER_ENCODER_IN_FEATURES,
            "common_stride": head.COMMON_STRIDE,
            "msdeformattn_impl": head.MSDEFORMATTN_IMPL,
        }

    def forward_features(self, features: Dict[str, torch.Tensor]):
        """
        Args:
            features: backbone maps, e.g. res2 (B, C2, H/4, W/4) ... res5 (B, C5, H/32, W/32).

        Returns:
            mask_features (B, mask_dim, H/s, W/s), s = common_stride;
            transformer_encoder_features: encoder output at the coarsest level (B, conv_dim, h, w);
            multi_scale_features: 3 maps (B, conv_dim, h_i, w_i), coarse to fine.
        """
        device_type = next(iter(features.values())).device.type
        if (not self.training and torch.is_autocast_enabled(device_type)
                and torch.get_autocast_dtype(device_type) == torch.bfloat16):
            # bf16 inference (MODEL.INFERENCE_DTYPE): the projections, FFNs and convolutions run
            # in bf16, MSDeformAttn keeps its sampling in float32. (bf16 has float32's exponent
            # range: the official all-float32 rule below guards float16 from overflowing.)
            return self._forward_features(features)
        # Deformable attention runs in float32 even under AMP, as in the official code (and in
        # bf16 training: SOLVER.AMP.CPU_BF16).
        with torch.autocast(device_type=device_type, enabled=False):
            return self._forward_features(features)

    def _forward_features(self, features):
        srcs, pos = [], []
        for idx, name in enumerate(self.transformer_in_features[::-1]):
            x = features[name].float()
            srcs.append(self.input_proj[idx](x))
            pos.append(self.pe_layer(x))
        memory, spatial_shapes, _ = self.transformer(srcs, pos)

        b = memory.shape[0]
        sizes = [h * w for h, w in spatial_shapes]
        out = [
            z.transpose(1, 2).reshape(b, -1, h, w)
            for z, (h, w) in zip(memory.split(sizes, dim=1), spatial_shapes)
        ]
        for idx, name in enumerate(self.in_features[: self.num_fpn_levels][::-1]):
            cur = self.lateral_convs[idx](features[name].float())
            # The encoder's levels are channels-last views of its (B, S, C) output; ATen's
            # bilinear upsampling of a channels-last map makes its 4x larger result contiguous
            # with two extra copies (~30 ms of 1.3 s for Swin-T at 512x512), the NCHW copy of the
            # input costs a fraction of that.
            y = cur + F.interpolate(out[-1].contiguous(), size=cur.shape[-2:], mode="bilinear",
                                    align_corners=False)
            out.append(self.output_convs[idx](y))

        multi_scale_features = out[: self.maskformer_num_feature_levels]
        return self.mask_features(out[-1]), out[0], multi_scale_features

    def forward(self, features, targets=None):
        logger.warning("Calling forward() of a pixel decoder; use forward_features().")
        return self.forward_features(features)
