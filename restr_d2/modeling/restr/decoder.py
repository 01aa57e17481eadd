"""ReSTR coarse-to-fine decoder: patch-level multimodal features -> pixel logits."""
import torch
from torch import nn

from ..language.blocks import init_restr_weights

__all__ = ["UpsampleBlock", "CoarseToFineDecoder"]


class UpsampleBlock(nn.Module):
    """(B, C_in, h, w) -> (B, C_out, 2h, 2w): bilinear x2 (align_corners=True) -> 1x1 conv
    (no bias) -> LeakyReLU(0.01), computed as conv -> bilinear -> LeakyReLU (the same function,
    see ``forward``). Keys ``up.1.weight`` as the official ``uplinearBlock``."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True),
            nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
            nn.LeakyReLU(0.01),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        upsample, conv, act = self.up
        # The official order is upsample -> conv. A 1x1 conv mixes channels and the bilinear
        # upsampling mixes pixels: both are linear, so they commute, and running the conv first
        # does its work at h x w instead of 2h x 2w (4x fewer FLOPs) and upsamples C_out = C_in / 2
        # channels; the result equals the official one up to float rounding.
        return act(upsample(conv(x)))


class CoarseToFineDecoder(nn.ModuleList):
    """(B, 2D, h, w) -> (B, 1, h * 2^n, w * 2^n) pixel logits.

    ``num_upsample`` (n) blocks, block i mapping ``2D / 2^i`` -> ``D / 2^i`` channels, then a 1x1
    conv (no bias) to one channel. With n = log2(patch size) the output is at input resolution.
    A ModuleList so that the keys are ``decoder.{i}.up.1.weight`` and ``decoder.{n}.weight``,
    the official layout inside ``fusion_module``.
    """

    def __init__(self, dim: int, num_upsample: int = 4):
        if num_upsample < 1:
            raise ValueError(f"num_upsample must be >= 1, got {num_upsample}")
        if dim % 2 ** (num_upsample - 1):
            raise ValueError(
                f"fusion width {dim} must be divisible by 2^(num_upsample-1) = "
                f"{2 ** (num_upsample - 1)}: each upsampling block halves the channels"
            )
        blocks = [UpsampleBlock(2 * dim // 2**i, dim // 2**i) for i in range(num_upsample)]
        blocks.append(nn.Conv2d(dim // 2 ** (num_upsample - 1), 1, kernel_size=1, bias=False))
        super().__init__(blocks)
        self.num_upsample = num_upsample
        self.apply(init_restr_weights)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self:
            x = layer(x)
        return x
