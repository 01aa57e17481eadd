"""Registry of ReSTR language encoders and the interface they share.

A language encoder turns sentences into a fixed number of token features:

* ``tokenize(sentences)`` -> dict of (B, T) tensors (CPU), the keyword arguments of ``forward``;
* ``forward(**tokens)`` -> ``LanguageFeatures(features (B, T, d_model), valid (B, T) bool)``,
  where ``valid`` is False at padding positions.

``d_model`` is the width of the multimodal fusion (the ViT width in the official model).
"""
import logging
from typing import NamedTuple

import torch
from detectron2.utils.registry import Registry

__all__ = ["LANGUAGE_ENCODER_REGISTRY", "LanguageFeatures", "build_language_encoder"]

logger = logging.getLogger(__name__)

LANGUAGE_ENCODER_REGISTRY = Registry("RESTR_LANGUAGE_ENCODER")
LANGUAGE_ENCODER_REGISTRY.__doc__ = """
Language encoders of ReSTR, selected by ``MODEL.RESTR.LANGUAGE.NAME``. Each is called as
``cls(cfg, d_model)`` and returns a module with ``tokenize`` and ``forward`` (see
``restr_d2.modeling.language.build``).
"""


class LanguageFeatures(NamedTuple):
    """features: (B, T, D) token features; valid: (B, T) bool, False at padding tokens."""

    features: torch.Tensor
    valid: torch.Tensor


def build_language_encoder(cfg, d_model: int):
    """Build ``cfg.MODEL.RESTR.LANGUAGE.NAME`` with output width ``d_model``."""
    name = cfg.MODEL.RESTR.LANGUAGE.NAME
    logger.info(f"ReSTR language encoder: {name} (MODEL.RESTR.LANGUAGE.NAME), d_model={d_model}")
    encoder = LANGUAGE_ENCODER_REGISTRY.get(name)(cfg, d_model)
    cache_mb = cfg.MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB
    if cache_mb > 0 and getattr(encoder, "feature_cache", None) is None:
        raise ValueError(
            f"MODEL.RESTR.LANGUAGE.FEATURE_CACHE_MB={cache_mb}: {name} has no frozen part whose features could be "
            f"cached (only HFLanguageEncoder with MODEL.RESTR.LANGUAGE.FREEZE True has). Set FEATURE_CACHE_MB 0"
        )
    return encoder
