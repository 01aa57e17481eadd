"""Mask2Former's masked-attention transformer decoder."""
import logging
from typing import List, Optional

import fvcore.nn.weight_init as weight_init
import torch
import torch.nn.functional as F
from detectron2.config import configurable
from detectron2.layers import Conv2d
from torch import nn

from segmentation_core.acceleration import capturing_graph

from ...layers import MLP, MultiheadAttention, PositionEmbeddingSine, get_activation_fn
from .build import TRANSFORMER_DECODER_REGISTRY

__all__ = ["SelfAttentionLayer", "CrossAttentionLayer", "FFNLayer", "MultiScaleMaskedTransformerDecoder"]

logger = logging.getLogger(__name__)


def _xavier_(module: nn.Module):
    for p in module.parameters():
        if p.dim() > 1:
            nn.init.xavier_uniform_(p)


def _with_pos(x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
    return x if pos is None else x + pos


def downsample_bilinear(x: torch.Tensor, size) -> torch.Tensor:
    """``F.interpolate(x, size, mode="bilinear", align_corners=False)`` of (B, C, H, W) maps,
    bit for bit, computed from strided slices when H and W shrink by even whole factors (the
    Mask2Former attention masks: 1/4 -> 1/8, 1/16, 1/32 of the padded image).

    Output pixel i samples input position i * k + (k - 1) / 2: for even k the midpoint of pixels
    i * k + k / 2 - 1 and i * k + k / 2, so each output is the 4 taps with weight 1/4, summed in
    the CPU kernel's order (top-left, top-right, bottom-left, bottom-right). The kernel copies
    its whole input first (a Q x H/4 x W/4 clone per decoder layer); the slices read only the
    taps. Other sizes go to ``F.interpolate``."""
    if capturing_graph():
        # a traced graph must serve every input size: the slices' factors would be baked in
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    h, w = x.shape[-2:]
    th, tw = int(size[0]), int(size[1])
    if x.dim() != 4 or th <= 0 or tw <= 0 or h % th or w % tw or (h // th) % 2 or (w // tw) % 2:
        return F.interpolate(x, size=(th, tw), mode="bilinear", align_corners=False)
    kh, kw = h // th, w // tw
    top, bottom = x[:, :, kh // 2 - 1::kh], x[:, :, kh // 2::kh]
    y0, y1 = kw // 2 - 1, kw // 2
    return (((top[..., y0::kw] * 0.25 + top[..., y1::kw] * 0.25) + bottom[..., y0::kw] * 0.25)
            + bottom[..., y1::kw] * 0.25)


def attention_mask_taps(features: torch.Tensor, size) -> Optional[torch.Tensor]:
    """The pixels of (B, C, H, W) ``features`` that :func:`downsample_bilinear` to ``size``
    reads, in their order: (B, C, 2 * th, 2 * tw); ``None`` where it reads every pixel (factor
    2) or takes ``F.interpolate`` (factors not even; graph capture).

    A mask's taps are the product of the mask embedding with the features' taps, so the
    attention mask at 1/8 (1/16) of the image needs a quarter (a sixteenth) of the 1/4-scale
    mask logits, with the same dot product per pixel (with this BLAS a pixel's result does not
    depend on how many pixels the product computes; the tests compare bit for bit)."""
    if capturing_graph() or features.dim() != 4:
        return None
    h, w = features.shape[-2:]
    th, tw = int(size[0]), int(size[1])
    if th <= 0 or tw <= 0 or h % th or w % tw or (h // th) % 2 or (w // tw) % 2 or (h // th, w // tw) == (2, 2):
        return None
    kh, kw = h // th, w // tw

    def taps(k: int, n: int) -> torch.Tensor:  # rows (cols) i*k + k/2 - 1 and i*k + k/2, interleaved
        first = torch.arange(n, device=features.device) * k + (k // 2 - 1)
        return torch.stack((first, first + 1), 1).reshape(-1)

    return features.index_select(2, taps(kh, th)).index_select(3, taps(kw, tw))


class SelfAttentionLayer(nn.Module):
    """Residual self-attention over queries with LayerNorm (post- or pre-norm). (B, Q, C) -> (B, Q, C)."""

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt, tgt_mask=None, tgt_key_padding_mask=None, query_pos=None):
        if self.normalize_before:
            x = self.norm(tgt)
            q = k = _with_pos(x, query_pos)
            return tgt + self.dropout(self.self_attn(q, k, x, tgt_mask, tgt_key_padding_mask))
        q = k = _with_pos(tgt, query_pos)
        return self.norm(tgt + self.dropout(self.self_attn(q, k, tgt, tgt_mask, tgt_key_padding_mask)))


class CrossAttentionLayer(nn.Module):
    """Residual cross-attention from queries (B, Q, C) to memory (B, L, C) with LayerNorm.

    ``memory_mask``: bool, broadcastable to (B, heads, Q, L), True where attention is blocked.
    """

    def __init__(self, d_model: int, nhead: int, dropout: float = 0.0, normalize_before: bool = False):
        super().__init__()
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt, memory, memory_mask=None, memory_key_padding_mask=None, pos=None, query_pos=None):
        x = self.norm(tgt) if self.normalize_before else tgt
        attn = self.multihead_attn(_with_pos(x, query_pos), _with_pos(memory, pos), memory,
                                   memory_mask, memory_key_padding_mask)
        tgt = tgt + self.dropout(attn)
        return tgt if self.normalize_before else self.norm(tgt)


class FFNLayer(nn.Module):
    """Residual two-layer MLP with LayerNorm. (B, Q, C) -> (B, Q, C)."""

    def __init__(self, d_model: int, dim_feedforward: int = 2048, dropout: float = 0.0,
                 activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm = nn.LayerNorm(d_model)
        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before
        _xavier_(self)

    def forward(self, tgt):
        x = self.norm(tgt) if self.normalize_before else tgt
        tgt = tgt + self.dropout(self.linear2(self.dropout(self.activation(self.linear1(x)))))
        return tgt if self.normalize_before else self.norm(tgt)


@TRANSFORMER_DECODER_REGISTRY.register()
class MultiScaleMaskedTransformerDecoder(nn.Module):
    """Mask2Former decoder.

    Learnable query features (``query_feat``) and positions (``query_embed``) are refined by
    ``dec_layers`` blocks of [masked cross-attention -> self-attention -> FFN]. Block i reads
    ``x[i % 3]`` (3 multi-scale maps, coarse to fine) and may only attend to the pixels where the
    previous prediction's mask, resized to that map, has sigmoid >= 0.5 (a query whose mask is
    empty there attends everywhere). A prediction is made from the initial queries and after each
    block: ``dec_layers + 1`` predictions, the last as ``pred_*``, the others in ``aux_outputs``.

    Shapes: x[i] (B, C_in, H_i, W_i); mask_features (B, mask_dim, H, W) ->
    pred_logits (B, Q, K+1), pred_masks (B, Q, H, W).

    Training (``matched_mask_grad``, on by default): the mask loss reaches only the queries the
    matcher assigns to a target (an unmatched query's mask gets a zero gradient), while the
    matcher and the next block's attention mask read every query's mask without gradient. So
    the (B, Q, H, W) mask logits are computed without autograd, and each prediction also
    carries ``pred_mask_embed`` (B, Q, mask_dim) and ``mask_features`` from which the criterion
    recomputes the matched masks with gradients: the same losses and gradients up to float
    summation order, without the backward of a Q-query einsum at 1/4 resolution per layer.
    Inference and ``matched_mask_grad=False`` compute the masks with autograd as before.

    ``forward(..., aux_masks=False)`` (the inference network, which reads only the last
    prediction): the earlier predictions carry ``pred_logits`` only, and their masks are
    computed only at the pixels the next attention mask is resized from
    (:func:`attention_mask_taps`): the same attention masks and outputs bit for bit (tested),
    without 9 full 1/4-scale mask products (~55 % of their pixels at 512 x 512; an
    8000 x 8000 image's are 1.6 GB each).
    """

    _version = 2

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
        dim_feedforward: int,
        dec_layers: int,
        pre_norm: bool,
        mask_dim: int,
        enforce_input_project: bool,
        matched_mask_grad: bool = True,
    ):
        super().__init__()
        self.matched_mask_grad = matched_mask_grad
        if not mask_classification:
            raise ValueError("MultiScaleMaskedTransformerDecoder only supports mask classification "
                             "(mask_classification=True).")
        self.mask_classification = mask_classification
        self.pe_layer = PositionEmbeddingSine(hidden_dim // 2, normalize=True)
        self.num_heads = nheads
        self.num_layers = dec_layers
        self.transformer_self_attention_layers = nn.ModuleList()
        self.transformer_cross_attention_layers = nn.ModuleList()
        self.transformer_ffn_layers = nn.ModuleList()
        for _ in range(dec_layers):
            self.transformer_self_attention_layers.append(
                SelfAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm))
            self.transformer_cross_attention_layers.append(
                CrossAttentionLayer(hidden_dim, nheads, dropout=0.0, normalize_before=pre_norm))
            self.transformer_ffn_layers.append(
                FFNLayer(hidden_dim, dim_feedforward=dim_feedforward, dropout=0.0, normalize_before=pre_norm))
        self.decoder_norm = nn.LayerNorm(hidden_dim)

        self.num_queries = num_queries
        self.query_feat = nn.Embedding(num_queries, hidden_dim)
        self.query_embed = nn.Embedding(num_queries, hidden_dim)

        self.num_feature_levels = 3
        self.level_embed = nn.Embedding(self.num_feature_levels, hidden_dim)
        self.input_proj = nn.ModuleList()
        for _ in range(self.num_feature_levels):
            if in_channels != hidden_dim or enforce_input_project:
                proj = Conv2d(in_channels, hidden_dim, kernel_size=1)
                weight_init.c2_xavier_fill(proj)
                self.input_proj.append(proj)
            else:
                self.input_proj.append(nn.Sequential())

        self.class_embed = nn.Linear(hidden_dim, num_classes + 1)
        self.mask_embed = MLP(hidden_dim, hidden_dim, mask_dim, 3)

    @classmethod
    def from_config(cls, cfg, in_channels, mask_classification):
        mf = cfg.MODEL.MASK_FORMER
        if mf.DEC_LAYERS < 1:
            raise ValueError(f"MODEL.MASK_FORMER.DEC_LAYERS must be >= 1; got {mf.DEC_LAYERS}.")
        return {
            "in_channels": in_channels,
            "mask_classification": mask_classification,
            "num_classes": cfg.MODEL.SEM_SEG_HEAD.NUM_CLASSES,
            "hidden_dim": mf.HIDDEN_DIM,
            "num_queries": mf.NUM_OBJECT_QUERIES,
            "nheads": mf.NHEADS,
            "dim_feedforward": mf.DIM_FEEDFORWARD,
            # DEC_LAYERS counts predictions (the learnable queries are supervised too), so there
            # is one transformer block fewer, as in the official config convention.
            "dec_layers": mf.DEC_LAYERS - 1,
            "pre_norm": mf.PRE_NORM,
            "enforce_input_project": mf.ENFORCE_INPUT_PROJ,
            "mask_dim": cfg.MODEL.SEM_SEG_HEAD.MASK_DIM,
            "matched_mask_grad": mf.MATCHED_MASK_GRAD,
        }

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        # Early Mask2Former checkpoints named the query features "static_query".
        version = local_metadata.get("version", None)
        if version is None or version < 2:
            renamed = False
            for k in [k for k in state_dict if k.startswith(prefix + "static_query")]:
                state_dict[k.replace("static_query", "query_feat", 1)] = state_dict.pop(k)
                renamed = True
            if renamed:
                logger.warning(f"{type(self).__name__}: renamed legacy 'static_query' weights to 'query_feat'.")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def forward(self, x: List[torch.Tensor], mask_features: torch.Tensor, mask=None, aux_masks: bool = True):
        if len(x) != self.num_feature_levels:
            raise ValueError(f"{type(self).__name__} needs {self.num_feature_levels} feature maps "
                             f"(MODEL.MASK_FORMER.TRANSFORMER_IN_FEATURE='multi_scale_pixel_decoder'); got {len(x)}.")
        # The padding mask is not used (as in the official code).
        del mask
        src, pos, sizes = [], [], []
        for i in range(self.num_feature_levels):
            sizes.append(x[i].shape[-2:])
            pos.append(self.pe_layer(x[i], None).flatten(2).transpose(1, 2))
            level = self.input_proj[i](x[i]).flatten(2) + self.level_embed.weight[i][None, :, None]
            src.append(level.transpose(1, 2))  # (B, H_i*W_i, C)

        bs = src[0].shape[0]
        query_embed = self.query_embed.weight.unsqueeze(0).expand(bs, -1, -1)
        output = self.query_feat.weight.unsqueeze(0).expand(bs, -1, -1)

        # training: full-size masks without autograd, matched ones recomputed by the criterion
        lazy = self.matched_mask_grad and self.training and torch.is_grad_enabled()
        # without aux masks: each attention-mask size's feature taps, gathered once
        taps = {} if aux_masks else {tuple(s): attention_mask_taps(mask_features, s) for s in sizes}
        predictions_class, predictions_mask, predictions_embed = [], [], []
        outputs_class, outputs_mask, attn_mask, mask_embed = self.forward_prediction_heads(
            output, mask_features, sizes[0], lazy, taps.get(tuple(sizes[0])))
        predictions_class.append(outputs_class)
        predictions_mask.append(outputs_mask)
        predictions_embed.append(mask_embed)

        for i in range(self.num_layers):
            level = i % self.num_feature_levels
            # A query whose mask is empty at this scale would attend to nothing: let it see everything.
            # (a broadcast instead of boolean-index assignment: no host sync, no scatter)
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)
            output = self.transformer_cross_attention_layers[i](
                output, src[level], memory_mask=attn_mask, memory_key_padding_mask=None,
                pos=pos[level], query_pos=query_embed,
            )
            output = self.transformer_self_attention_layers[i](output, query_pos=query_embed)
            output = self.transformer_ffn_layers[i](output)
            size = sizes[(i + 1) % self.num_feature_levels]
            last = i == self.num_layers - 1
            outputs_class, outputs_mask, attn_mask, mask_embed = self.forward_prediction_heads(
                output, mask_features, size, lazy, None if last else taps.get(tuple(size)))
            predictions_class.append(outputs_class)
            predictions_mask.append(outputs_mask)
            predictions_embed.append(mask_embed)

        predictions = [{"pred_logits": c, "pred_masks": m} for c, m in zip(predictions_class, predictions_mask)]
        if not aux_masks:
            predictions[:-1] = [{"pred_logits": c} for c in predictions_class[:-1]]
        if lazy:
            for p, e in zip(predictions, predictions_embed):
                p.update(pred_mask_embed=e, mask_features=mask_features)
        return {**predictions[-1], "aux_outputs": predictions[:-1]}

    def forward_prediction_heads(self, output: torch.Tensor, mask_features: torch.Tensor, attn_mask_target_size,
                                 lazy: bool = False, taps: Optional[torch.Tensor] = None):
        """output (B, Q, C) -> class logits (B, Q, K+1), mask logits (B, Q, H, W), the next
        attention mask, bool (B, 1, Q, h*w) at ``attn_mask_target_size`` (True = blocked), and
        the mask embeddings (B, Q, mask_dim). ``lazy``: the mask logits without autograd.
        ``taps``: :func:`attention_mask_taps` of ``mask_features`` for this size; the mask
        logits are then computed there only, and returned as ``None``."""
        decoder_output = self.decoder_norm(output)
        outputs_class = self.class_embed(decoder_output)
        mask_embed = self.mask_embed(decoder_output)
        if taps is not None:
            outputs_mask = None
            resized_from = torch.einsum("bqc,bchw->bqhw", mask_embed, taps)
        elif lazy:
            with torch.no_grad():
                outputs_mask = resized_from = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        else:
            outputs_mask = resized_from = torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)
        attn_mask = downsample_bilinear(resized_from.detach(), attn_mask_target_size)
        # Same for every head: one (B, 1, Q, HW) mask broadcast over heads.
        attn_mask = (attn_mask.sigmoid().flatten(2).unsqueeze(1) < 0.5).detach()
        return outputs_class, outputs_mask, attn_mask, mask_embed
