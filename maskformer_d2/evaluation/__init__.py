from .instance_evaluation import InstanceSegEvaluator  # noqa: F401
from .panoptic_evaluation import PanopticQualityEvaluator  # noqa: F401
