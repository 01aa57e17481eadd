"""Resizing of ViT position embeddings to another patch grid (Segmenter/ReSTR convention)."""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ["resize_pos_embed"]


def resize_pos_embed(
    pos_embed: torch.Tensor,
    old_grid: Optional[Tuple[int, int]],
    new_grid: Tuple[int, int],
    num_extra_tokens: int,
    mode: str = "bilinear",
) -> torch.Tensor:
    """Interpolate the grid part of a position embedding; extra (CLS/DIST) tokens are kept.

    Args:
        pos_embed: (1, T + gh_old * gw_old, D).
        old_grid: (gh_old, gw_old), or None to assume a square grid of side sqrt(N) as the
            official checkpoint filter does.
        new_grid: (gh_new, gw_new).
        num_extra_tokens: T, 1 for CLS, 2 for CLS + DIST.
        mode: "bilinear" (official Segmenter, and timm 0.4.12 which Segmenter pins) or
            "bicubic" (timm 0.6, which ReSTR pins; DINOv2). Always align_corners=False, no
            antialias, except for "bicubic_antialias" (DINOv2 register models as released and
            in Hugging Face, and timm >= 0.9: antialiased bicubic).

    Returns:
        (1, T + gh_new * gw_new, D).
    """
    extra, grid = pos_embed[:, :num_extra_tokens], pos_embed[0, num_extra_tokens:]
    if old_grid is None:
        side = int(math.sqrt(grid.shape[0]))
        old_grid = (side, side)
    gh_old, gw_old = old_grid
    if gh_old * gw_old != grid.shape[0]:
        raise ValueError(
            f"position embedding has {grid.shape[0]} grid tokens, which does not match the grid "
            f"{tuple(old_grid)} (num_extra_tokens={num_extra_tokens}); pass the grid the "
            "embedding was trained on"
        )
    gh, gw = new_grid
    grid = grid.reshape(1, gh_old, gw_old, -1).permute(0, 3, 1, 2)
    antialias = mode.endswith("_antialias")
    grid = F.interpolate(grid, size=(gh, gw), mode=mode[: -len("_antialias")] if antialias else mode,
                         align_corners=False, antialias=antialias)
    grid = grid.permute(0, 2, 3, 1).reshape(1, gh * gw, -1)
    return torch.cat([extra, grid], dim=1)
