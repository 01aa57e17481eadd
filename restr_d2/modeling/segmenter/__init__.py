"""Segmenter (Strudel et al., ICCV 2021): meta-arch ``Segmenter`` and heads
``SegmenterLinearHead`` / ``SegmenterMaskTransformerHead`` (registered on import)."""
from .linear_head import SegmenterLinearHead  # noqa: F401
from .mask_transformer_head import SegmenterMaskTransformerHead  # noqa: F401
from .segmenter import Segmenter  # noqa: F401
from .sliding_window import resize_short_side, sliding_window_inference, window_anchors  # noqa: F401
from .checkpoint import (  # noqa: F401
    SegmenterCheckpointer,
    check_state_dict,
    convert_official_segmenter,
)
