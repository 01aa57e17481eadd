"""Transformer decoders (``TRANSFORMER_DECODER_REGISTRY``): StandardTransformerDecoder (MaskFormer)
and MultiScaleMaskedTransformerDecoder (Mask2Former)."""
from .build import TRANSFORMER_DECODER_REGISTRY, build_transformer_decoder
from .masked_attention import MultiScaleMaskedTransformerDecoder
from .standard import StandardTransformerDecoder

__all__ = [
    "TRANSFORMER_DECODER_REGISTRY",
    "build_transformer_decoder",
    "StandardTransformerDecoder",
    "MultiScaleMaskedTransformerDecoder",
]
