"""ReSTR: meta-architecture ``ReSTR``, fusion encoders, coarse-to-fine decoder, loss."""
from .checkpoint import convert_official_restr_state_dict  # noqa: F401
from .criterion import ReferringCriterion, patch_labels  # noqa: F401
from .decoder import CoarseToFineDecoder  # noqa: F401
from .fusion import (  # noqa: F401
    FUSION_REGISTRY,
    ConjugateFusion,
    IndependentFusion,
    MultimodalFusion,
    VanillaFusion,
    build_fusion_module,
)
from .resize import resize_and_pad, undo_resize_and_pad  # noqa: F401
from .restr_model import ReSTR, build_restr_vit  # noqa: F401
