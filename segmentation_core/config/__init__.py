"""The project's config entry point: ``build_cfg(config_file, opts)`` with family-scoped
defaults, safe YAML reading, and file paths resolved relative to the YAML."""
from .build import (  # noqa: F401
    ProjectCfgNode, assemble_config, build_cfg, config_tree, get_config_file, load_config,
)
from .families import (  # noqa: F401
    CONFIG_FAMILY_REGISTRY,
    ConfigFamily,
    ConfigFamilyError,
    detect_family,
    guess_checkpoint_family,
    load_plugins,
    registered_families,
    yaml_value,
)
from .safe_cfg import SafeCfgNode, make_cfg_safe, safe_merge_from_file  # noqa: F401
from .yaml_loading import ConfigYAMLError, UnsafeYAMLError, evaluate_size_expression, load_yaml_with_base  # noqa: F401
