"""Backbones (``BACKBONE_REGISTRY``): D2SwinTransformer."""
from .swin import D2SwinTransformer, SwinTransformer

__all__ = ["D2SwinTransformer", "SwinTransformer"]
