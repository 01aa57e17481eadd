"""Segmenter and ReSTR as the config entry point (``segmentation_core.config.build_cfg``) sees them."""
from segmentation_core.config import CONFIG_FAMILY_REGISTRY, ConfigFamily

from .restr import add_restr_config
from .segmenter import add_segmenter_config

__all__ = ["SegmenterConfig", "ReSTRConfig"]


@CONFIG_FAMILY_REGISTRY.register()
class SegmenterConfig(ConfigFamily):
    meta_architectures = ("Segmenter",)
    checkpoint_key_prefixes = ("encoder.", "decoder.")
    add_config = staticmethod(add_segmenter_config)


@CONFIG_FAMILY_REGISTRY.register()
class ReSTRConfig(ConfigFamily):
    meta_architectures = ("ReSTR",)
    # resolved relative to the YAML that sets them (then the folders above it)
    path_keys = ("MODEL.RESTR.LANGUAGE.VOCAB_FILE", "MODEL.RESTR.LANGUAGE.EMBEDDING_FILE",
                 "MODEL.RESTR.LANGUAGE.EMBEDDING_WORDS", "MODEL.RESTR.LANGUAGE.HF_PATH")
    checkpoint_key_prefixes = ("encoder_v.", "encoder_l.", "fusion_module.", "decoder.")
    num_classes_key = None  # binary referring segmentation
    add_config = staticmethod(add_restr_config)
