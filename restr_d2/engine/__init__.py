"""Inference helpers of restr_d2: ``ReferringPredictor``."""
from .predictor import ReferringPredictor  # noqa: F401
