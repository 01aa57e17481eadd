from . import mask_former_head, per_pixel_baseline  # noqa: F401  (SEM_SEG_HEADS_REGISTRY)
from . import mask_former_model  # noqa: F401  (META_ARCH_REGISTRY)
