"""Point sampling used by the Mask2Former matcher and criterion.

Kept here (instead of importing ``detectron2.projects.point_rend``) because a pip-installed
detectron2 does not ship the ``projects`` packages. The semantics equal PointRend's
``point_sample`` and ``get_uncertain_point_coords_with_randomness``: coordinates are in
``[0, 1]^2``, (x, y) order, read with ``grid_sample(align_corners=False)``, and the random
calls are made in the same order with the same shapes, so a seeded run draws the same points.
"""
from typing import Callable

import torch
import torch.nn.functional as F

__all__ = ["point_sample", "get_uncertain_point_coords_with_randomness", "calculate_uncertainty"]


def point_sample(features: torch.Tensor, coords: torch.Tensor, align_corners: bool = False) -> torch.Tensor:
    """Bilinearly read ``features`` at normalised point coordinates.

    Args:
        features: (N, C, H, W).
        coords: (N, P, 2) or (N, Hg, Wg, 2), (x, y) in ``[0, 1]``.

    Returns:
        (N, C, P) for 3-d ``coords``, else (N, C, Hg, Wg).
    """
    if coords.dim() not in (3, 4) or coords.shape[-1] != 2:
        raise ValueError(f"point coords must be (N, P, 2) or (N, Hg, Wg, 2); got {tuple(coords.shape)}")
    flat = coords.dim() == 3
    grid = coords.unsqueeze(2) if flat else coords
    out = F.grid_sample(features, 2.0 * grid - 1.0, align_corners=align_corners)
    return out.squeeze(3) if flat else out


def calculate_uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of binary mask logits (N, 1, P): points near the 0 logit score highest."""
    if logits.shape[1] != 1:
        raise ValueError(f"expected class-agnostic logits (N, 1, P); got {tuple(logits.shape)}")
    return -logits.abs()


def get_uncertain_point_coords_with_randomness(
    coarse_logits: torch.Tensor,
    uncertainty_func: Callable[[torch.Tensor], torch.Tensor],
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """Importance sampling of PointRend (Kirillov et al.).

    Draws ``int(num_points * oversample_ratio)`` uniform candidates per mask, keeps the
    ``int(importance_sample_ratio * num_points)`` most uncertain (sorted by decreasing
    uncertainty) and appends uniformly drawn points for the rest.

    Args:
        coarse_logits: (N, 1, H, W) mask logits.

    Returns:
        (N, num_points, 2) coordinates in ``[0, 1]^2``.
    """
    if oversample_ratio < 1:
        raise ValueError(f"oversample_ratio must be >= 1; got {oversample_ratio}")
    if not 0 <= importance_sample_ratio <= 1:
        raise ValueError(f"importance_sample_ratio must be in [0, 1]; got {importance_sample_ratio}")
    num_masks = coarse_logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    candidates = torch.rand(num_masks, num_candidates, 2, device=coarse_logits.device)
    uncertainty = uncertainty_func(point_sample(coarse_logits, candidates, align_corners=False))
    num_uncertain = int(importance_sample_ratio * num_points)
    num_random = num_points - num_uncertain
    top = torch.topk(uncertainty[:, 0, :], k=num_uncertain, dim=1)[1]
    coords = torch.gather(candidates, 1, top.unsqueeze(-1).expand(-1, -1, 2))
    if num_random > 0:
        extra = torch.rand(num_masks, num_random, 2, device=coarse_logits.device)
        coords = torch.cat([coords, extra], dim=1)
    return coords
