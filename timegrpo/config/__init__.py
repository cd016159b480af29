"""Configuration: a tree of validated dataclasses loaded from a recipe YAML with command-line overrides.

``TrainConfig(method, model: ModelConfig, data: DataConfig, train: GRPOConfig, sft: SFTConfig)``; see
:mod:`timegrpo.config.sections` for the fields and :mod:`timegrpo.config.loader` for the loading rules.
"""

from timegrpo.config.loader import (
    SECTIONS,
    coerce_value,
    config_from_dict,
    format_help,
    load_config,
    parse_overrides,
    resolve_key,
    save_config,
    to_dict,
    to_yaml,
)
from timegrpo.config.sections import (
    METHOD_OBJECTIVES,
    ConfigError,
    DataConfig,
    GRPOConfig,
    ModelConfig,
    OptimConfig,
    SFTConfig,
    TrainConfig,
)

__all__ = [
    "METHOD_OBJECTIVES",
    "SECTIONS",
    "ConfigError",
    "DataConfig",
    "GRPOConfig",
    "ModelConfig",
    "OptimConfig",
    "SFTConfig",
    "TrainConfig",
    "coerce_value",
    "config_from_dict",
    "format_help",
    "load_config",
    "parse_overrides",
    "resolve_key",
    "save_config",
    "to_dict",
    "to_yaml",
]
