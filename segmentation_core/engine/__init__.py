"""Training engine shared by both plugins: optimizer rules, LR schedules, mapper registry,
evaluator selection, semantic TTA, a CPU-safe ``launch`` and the ``Trainer``."""
from .config import add_engine_config  # noqa: F401
from .launch import launch  # noqa: F401
from .evaluators import EvalTasks, build_evaluators, register_evaluator  # noqa: F401
from .mapper_registry import build_dataset_mapper, get_mapper_class, register_mapper  # noqa: F401
from .optimizer import build_optimizer, get_param_groups  # noqa: F401
