"""Evaluators of restr_d2: ``ReferringEvaluator`` (oIoU, mIoU, Prec@X)."""
from .referring_evaluation import ReferringEvaluator, mask_intersection_union, referring_metrics  # noqa: F401
