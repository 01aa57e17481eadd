"""Helpers for the ``add_*_config`` functions of both plugins.

They only fill in what is missing, so every ``add_*_config`` can be called twice, or after
another family's function that defines some of the same keys, without overwriting anything.
"""
from detectron2.config import CfgNode as CN


def set_default(node: CN, key: str, value) -> None:
    """``node[key] = value`` unless ``key`` is already defined."""
    if key not in node:
        node[key] = value
