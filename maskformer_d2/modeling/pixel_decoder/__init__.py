"""Pixel decoders (``PIXEL_DECODER_REGISTRY``): BasePixelDecoder, TransformerEncoderPixelDecoder,
MSDeformAttnPixelDecoder."""
from .build import PIXEL_DECODER_REGISTRY, build_pixel_decoder
from .fpn import BasePixelDecoder, TransformerEncoderPixelDecoder
from .msdeformattn import MSDeformAttnPixelDecoder

__all__ = [
    "PIXEL_DECODER_REGISTRY",
    "build_pixel_decoder",
    "BasePixelDecoder",
    "TransformerEncoderPixelDecoder",
    "MSDeformAttnPixelDecoder",
]
