"""Plain ViT shared by Segmenter and ReSTR (``VisionTransformer``) and its detectron2
backbones ``D2PlainViT`` and ``D2ViTSimpleFeaturePyramid`` (multi-scale, for Mask2Former),
registered on import."""
from .blocks import Attention, Block, DropPath, Mlp, PatchEmbed  # noqa: F401
from .pos_embed import resize_pos_embed  # noqa: F401
from .vit import (  # noqa: F401
    VIT_PRESETS,
    VisionTransformer,
    init_segmenter_weights,
    pad_to_patch_multiple,
    trunc_normal_,
    vit_kwargs_from_official,
)
from .d2_vit import D2PlainViT  # noqa: F401
from .simple_pyramid import D2ViTSimpleFeaturePyramid  # noqa: F401
