"""Plain-ViT segmentation for detectron2: Segmenter (semantic) and ReSTR (referring).

Importing this package registers its backbone, heads, meta-architectures and datasets.
"""
import segmentation_core  # noqa: F401  (first: imports detectron2 without its torch.jit.script warnings)
from . import data  # noqa: F401  (registers datasets and mappers)
from . import evaluation  # noqa: F401  (registers evaluators)
from . import modeling  # noqa: F401  (registers models)
from .config import add_restr_config, add_segmenter_config, add_vit_config  # noqa: F401
from . import export  # noqa: F401,E402  (registers the ONNX export specs; needs no onnx)
