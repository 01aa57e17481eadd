"""Sine position encoding of a 2-d feature map (DETR / MaskFormer / Mask2Former convention)."""
import math
from typing import Optional

import torch
from torch import nn

__all__ = ["PositionEmbeddingSine"]


class PositionEmbeddingSine(nn.Module):
    """Fixed sine/cosine encoding of the (y, x) position of every pixel.

    For a feature map (B, C, H, W) returns (B, 2 * num_pos_feats, H, W): the first
    ``num_pos_feats`` channels encode y, the last ``num_pos_feats`` encode x. Within each half,
    channel 2i is ``sin(p / T^(2i/F))`` and channel 2i+1 is ``cos(p / T^(2i/F))``, where ``p`` is the
    1-based cumulative count of unmasked pixels (scaled to ``(0, scale]`` when ``normalize``).

    The encoding depends only on the spatial size (and ``mask``), never on the values of ``x``.
    The module has no parameters and no state-dict entries.
    """

    def __init__(
        self,
        num_pos_feats: int = 64,
        temperature: float = 10000,
        normalize: bool = False,
        scale: Optional[float] = None,
    ):
        super().__init__()
        if scale is not None and not normalize:
            raise ValueError("PositionEmbeddingSine: `scale` is only used with normalize=True; "
                             "pass normalize=True or drop `scale`.")
        self.num_pos_feats = num_pos_feats
        self.temperature = temperature
        self.normalize = normalize
        self.scale = 2 * math.pi if scale is None else scale

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """x: (B, C, H, W); mask: optional bool (B, H, W), True on padded pixels."""
        b, h, w = x.shape[0], x.shape[2], x.shape[3]
        if mask is None:
            # Nothing masked: the counts are 1..H down a column and 1..W along a row (exact in
            # float32), so the phases and their sin/cos are computed once per row and column,
            # (H + W) x F instead of 2 x B x H x W x F, then broadcast.
            y_embed = torch.arange(1, h + 1, dtype=torch.float32, device=x.device).view(1, h, 1)
            x_embed = torch.arange(1, w + 1, dtype=torch.float32, device=x.device).view(1, 1, w)
        else:
            not_mask = ~mask
            y_embed = not_mask.cumsum(1, dtype=torch.float32)
            x_embed = not_mask.cumsum(2, dtype=torch.float32)
        if self.normalize:
            eps = 1e-6
            y_embed = y_embed / (y_embed[:, -1:, :] + eps) * self.scale
            x_embed = x_embed / (x_embed[:, :, -1:] + eps) * self.scale

        # Channels 2i and 2i+1 share one frequency; even channels take sin, odd take cos.
        idx = torch.arange(self.num_pos_feats, dtype=torch.float32, device=x.device)
        dim_t = self.temperature ** (2 * torch.div(idx, 2, rounding_mode="floor") / self.num_pos_feats)
        pos_x = self._interleave_sin_cos(x_embed[:, :, :, None] / dim_t)
        pos_y = self._interleave_sin_cos(y_embed[:, :, :, None] / dim_t)
        shape = (b, h, w, self.num_pos_feats)
        return torch.cat((pos_y.expand(shape), pos_x.expand(shape)), dim=3).permute(0, 3, 1, 2)

    @staticmethod
    def _interleave_sin_cos(phase: torch.Tensor) -> torch.Tensor:
        return torch.stack((phase[..., 0::2].sin(), phase[..., 1::2].cos()), dim=4).flatten(3)

    def extra_repr(self) -> str:
        return (f"num_pos_feats={self.num_pos_feats}, temperature={self.temperature}, "
                f"normalize={self.normalize}, scale={self.scale}")
