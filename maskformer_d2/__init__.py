"""MaskFormer and Mask2Former for detectron2.

Importing this package registers its backbones, heads, pixel decoders, transformer decoders,
meta-architecture and datasets with detectron2.
"""
import segmentation_core  # noqa: F401  (first: imports detectron2 without its torch.jit.script warnings)
from . import data  # noqa: F401  (registers datasets and mappers)
from . import evaluation  # noqa: F401  (registers evaluators)
from . import modeling  # noqa: F401  (registers models)
from .config import add_maskformer2_config, add_mask_former_config  # noqa: F401
from . import export  # noqa: F401,E402  (registers the ONNX export spec; needs no onnx)
