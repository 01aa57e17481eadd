"""Code shared by ``maskformer_d2`` and ``restr_d2``: detectron2 compatibility checks and the
embedded synthetic ``shapes`` datasets."""


def _import_detectron2_quietly():
    """Import detectron2's modeling package once, without the two ``torch.jit.script is
    deprecated`` FutureWarnings torch >= 2.10 prints for the classes detectron2 v0.6 scripts at
    import (``Box2BoxTransform``, ``Box2BoxTransformRotated`` in ``modeling/box_regression.py``).
    They concern detectron2's internals, which still work, and say nothing a user can act on.
    Only that message, only during this import: any other warning still shows."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
        try:
            import detectron2.modeling.box_regression  # noqa: F401
        except ImportError:  # detectron2 not installed yet (tools/install/install_detectron2.py)
            pass


_import_detectron2_quietly()

from .safe_checkpoint import install_safe_checkpoint_loading  # noqa: E402

# detectron2's DefaultPredictor / DefaultTrainer load MODEL.WEIGHTS with a plain
# DetectionCheckpointer: once this package is imported they read files without running code
install_safe_checkpoint_loading()
