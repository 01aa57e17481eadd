"""DETR-style transformer encoder / decoder layers (positional encodings added to queries and keys
at every layer), as used by MaskFormer's pixel decoder and predictor.

All tensors are batch-first: sequences are (B, L, C). State-dict keys equal the official ones
(``self_attn``, ``multihead_attn``, ``linear1``, ``linear2``, ``norm1..3``).
"""
import copy
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .attention import MultiheadAttention

__all__ = [
    "get_activation_fn",
    "TransformerEncoderLayer",
    "TransformerEncoder",
    "TransformerDecoderLayer",
    "TransformerDecoder",
    "Transformer",
]


def get_activation_fn(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    table = {"relu": F.relu, "gelu": F.gelu, "glu": F.glu}
    if name not in table:
        raise ValueError(f"activation must be one of {sorted(table)}; got {name!r}.")
    return table[name]


def _with_pos(x: torch.Tensor, pos: Optional[torch.Tensor]) -> torch.Tensor:
    return x if pos is None else x + pos


def clone_layers(layer: nn.Module, n: int) -> nn.ModuleList:
    return nn.ModuleList([copy.deepcopy(layer) for _ in range(n)])


class TransformerEncoderLayer(nn.Module):
    """Self-attention + FFN. src (B, L, C), pos (B, L, C) or None -> (B, L, C)."""

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, src: torch.Tensor, src_mask: Optional[torch.Tensor] = None,
                src_key_padding_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.normalize_before:
            x = self.norm1(src)
            q = k = _with_pos(x, pos)
            src = src + self.dropout1(self.self_attn(q, k, x, src_mask, src_key_padding_mask))
            return src + self.dropout2(self._ffn(self.norm2(src)))
        q = k = _with_pos(src, pos)
        src = self.norm1(src + self.dropout1(self.self_attn(q, k, src, src_mask, src_key_padding_mask)))
        return self.norm2(src + self.dropout2(self._ffn(src)))


class TransformerEncoder(nn.Module):
    """Stack of encoder layers with an optional final norm (present only for pre-norm)."""

    def __init__(self, encoder_layer: nn.Module, num_layers: int, norm: Optional[nn.Module] = None):
        super().__init__()
        self.layers = clone_layers(encoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm

    def forward(self, src: torch.Tensor, mask: Optional[torch.Tensor] = None,
                src_key_padding_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        out = src
        for layer in self.layers:
            out = layer(out, src_mask=mask, src_key_padding_mask=src_key_padding_mask, pos=pos)
        if self.norm is not None:
            out = self.norm(out)
        return out


class TransformerDecoderLayer(nn.Module):
    """Self-attention over queries, cross-attention to memory, FFN.

    tgt (B, Q, C), memory (B, L, C), pos (B, L, C), query_pos (B, Q, C) -> (B, Q, C).
    """

    def __init__(self, d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False):
        super().__init__()
        self.self_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.multihead_attn = MultiheadAttention(d_model, nhead, dropout=dropout)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.dropout = nn.Dropout(dropout)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)
        self.dropout1 = nn.Dropout(dropout)
        self.dropout2 = nn.Dropout(dropout)
        self.dropout3 = nn.Dropout(dropout)
        self.activation = get_activation_fn(activation)
        self.normalize_before = normalize_before

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.activation(self.linear1(x))))

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor,
                tgt_mask: Optional[torch.Tensor] = None,
                memory_mask: Optional[torch.Tensor] = None,
                tgt_key_padding_mask: Optional[torch.Tensor] = None,
                memory_key_padding_mask: Optional[torch.Tensor] = None,
                pos: Optional[torch.Tensor] = None,
                query_pos: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.normalize_before:
            x = self.norm1(tgt)
            q = k = _with_pos(x, query_pos)
            tgt = tgt + self.dropout1(self.self_attn(q, k, x, tgt_mask, tgt_key_padding_mask))
            x = self.norm2(tgt)
            tgt = tgt + self.dropout2(self.multihead_attn(
                _with_pos(x, query_pos), _with_pos(memory, pos), memory,
                memory_mask, memory_key_padding_mask))
            return tgt + self.dropout3(self._ffn(self.norm3(tgt)))
        q = k = _with_pos(tgt, query_pos)
        tgt = self.norm1(tgt + self.dropout1(self.self_attn(q, k, tgt, tgt_mask, tgt_key_padding_mask)))
        tgt = self.norm2(tgt + self.dropout2(self.multihead_attn(
            _with_pos(tgt, query_pos), _with_pos(memory, pos), memory,
            memory_mask, memory_key_padding_mask)))
        return self.norm3(tgt + self.dropout3(self._ffn(tgt)))


class TransformerDecoder(nn.Module):
    """Stack of decoder layers followed by a shared final LayerNorm.

    Returns (num_layers, B, Q, C) with every layer's normed output when ``return_intermediate``,
    else (1, B, Q, C) with the last one.
    """

    def __init__(self, decoder_layer: nn.Module, num_layers: int, norm: nn.Module,
                 return_intermediate: bool = False):
        super().__init__()
        self.layers = clone_layers(decoder_layer, num_layers)
        self.num_layers = num_layers
        self.norm = norm
        self.return_intermediate = return_intermediate

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, **kwargs) -> torch.Tensor:
        out = tgt
        intermediate = []
        for layer in self.layers:
            out = layer(out, memory, **kwargs)
            if self.return_intermediate:
                intermediate.append(self.norm(out))
        if self.return_intermediate:
            return torch.stack(intermediate)
        return self.norm(out).unsqueeze(0)


class Transformer(nn.Module):
    """DETR encoder-decoder used by MaskFormer's predictor (``predictor.transformer``).

    src (B, C, H, W), mask (B, H, W) bool or None, query_embed (Q, C), pos_embed (B, C, H, W)
    -> hs (num_dec_layers or 1, B, Q, C), memory (B, C, H, W). The decoder starts from zero
    queries; ``query_embed`` is added as the query position at every layer.
    """

    def __init__(self, d_model: int = 512, nhead: int = 8, num_encoder_layers: int = 6,
                 num_decoder_layers: int = 6, dim_feedforward: int = 2048, dropout: float = 0.1,
                 activation: str = "relu", normalize_before: bool = False,
                 return_intermediate_dec: bool = False):
        super().__init__()
        enc_layer = TransformerEncoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.encoder = TransformerEncoder(enc_layer, num_encoder_layers,
                                          nn.LayerNorm(d_model) if normalize_before else None)
        dec_layer = TransformerDecoderLayer(d_model, nhead, dim_feedforward, dropout, activation, normalize_before)
        self.decoder = TransformerDecoder(dec_layer, num_decoder_layers, nn.LayerNorm(d_model),
                                          return_intermediate=return_intermediate_dec)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.xavier_uniform_(p)
        self.d_model = d_model
        self.nhead = nhead

    def forward(self, src: torch.Tensor, mask: Optional[torch.Tensor], query_embed: torch.Tensor,
                pos_embed: torch.Tensor):
        b, c, h, w = src.shape
        src = src.flatten(2).transpose(1, 2)
        pos_embed = pos_embed.flatten(2).transpose(1, 2)
        query_pos = query_embed.unsqueeze(0).expand(b, -1, -1)
        if mask is not None:
            mask = mask.flatten(1)
        memory = self.encoder(src, src_key_padding_mask=mask, pos=pos_embed)
        hs = self.decoder(torch.zeros_like(query_pos), memory, memory_key_padding_mask=mask,
                          pos=pos_embed, query_pos=query_pos)
        return hs, memory.transpose(1, 2).reshape(b, c, h, w)
