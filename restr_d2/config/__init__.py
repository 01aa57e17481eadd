from .segmenter import add_segmenter_config, add_vit_config  # noqa: F401
from .restr import add_restr_config  # noqa: F401
from .families import ReSTRConfig, SegmenterConfig  # noqa: F401
