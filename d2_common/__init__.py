"""Code shared by ``maskformer_d2`` and ``restr_d2``: detectron2 compatibility checks and the
embedded synthetic ``shapes`` datasets."""
from .safe_checkpoint import install_safe_checkpoint_loading

# detectron2's DefaultPredictor / DefaultTrainer load MODEL.WEIGHTS with a plain
# DetectionCheckpointer: once this package is imported they read files without running code
install_safe_checkpoint_loading()
