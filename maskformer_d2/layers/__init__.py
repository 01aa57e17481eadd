"""Building blocks shared by the MaskFormer / Mask2Former pixel decoders and transformer decoders."""
from .attention import MultiheadAttention
from .mlp import MLP
from .ms_deform_attn import (
    MS_DEFORM_ATTN_IMPLS,
    MSDeformAttn,
    get_ms_deform_attn_core,
    ms_deform_attn_core_levelwise,
    ms_deform_attn_core_pytorch,
)
from .pointwise_conv import PointwiseConv2d
from .position_encoding import PositionEmbeddingSine
from .transformer import (
    Transformer,
    TransformerDecoder,
    TransformerDecoderLayer,
    TransformerEncoder,
    TransformerEncoderLayer,
    get_activation_fn,
)

__all__ = [k for k in globals().keys() if not k.startswith("_")]
