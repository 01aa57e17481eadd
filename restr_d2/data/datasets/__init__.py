"""Referring datasets. Importing registers the RefCOCO family and ReferIt (``refcoco.py``) and
the synthetic ``shapes_*`` datasets (``segmentation_core.data.shapes``)."""
import segmentation_core.data.shapes  # noqa: F401  (registers shapes_*, incl. shapes_refcoco_unc_*)

from . import refcoco  # noqa: F401  (registers refcoco*, refcocog*, referit_*)
from .ref_sampler import OneSentencePerRefSampler  # noqa: F401
