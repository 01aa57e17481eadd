"""Synthetic ``shapes`` datasets: small images of circles / squares / triangles / stars on
sky / grass / water / wall, with semantic, panoptic, instance and referring annotations.

Importing this module registers (without generating anything)::

    shapes_sem_seg_{train,val}  shapes_panoptic_{train,val}
    shapes_instance_{train,val} shapes_refcoco_unc_{train,val}

The data is generated on first use into ``$DETECTRON2_DATASETS/shapes`` (default
``./datasets/shapes``): 200 train / 50 val images unless ``SHAPES_NUM_TRAIN`` /
``SHAPES_NUM_VAL`` (and ``SHAPES_SEED``) say otherwise, read at import. A dataset that is
missing, corrupt or made with other parameters is regenerated. To generate ahead of time:
``python tools/data/generate_shapes.py``.
"""
from .builtin import load_shapes_panoptic, load_shapes_sem_seg, register_shapes  # noqa: F401
from .cache import config_from_env, ensure_shapes, verify_shapes  # noqa: F401
from .categories import shapes_panoptic_metadata  # noqa: F401
from .generate import ShapesConfig, generate_shapes  # noqa: F401

_REGISTERED = register_shapes()
