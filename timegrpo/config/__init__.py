"""Configuration: trees of validated dataclasses loaded from YAML with command-line overrides.

:mod:`timegrpo.config.core` is the one mechanism every command uses (``--config FILE``, ``--section.key value``,
``--print-config``); :mod:`timegrpo.config.recipe` is the training recipe,
``RecipeConfig(method, model: ModelConfig, data: DataConfig, train: RLConfig, sft: SFTConfig, masking: MaskingConfig,
curriculum: CurriculumConfig)`` (the last two in :mod:`timegrpo.config.curriculum`).
"""

from timegrpo.config.core import (
    ConfigError,
    coerce_value,
    format_help,
    from_dict,
    load,
    parse_overrides,
    resolve_key,
    save_config,
    to_dict,
    to_yaml,
)
from timegrpo.config.curriculum import CurriculumConfig, MaskingConfig
from timegrpo.config.recipe import (
    DEFAULT_LORA_TARGETS,
    METHOD_OBJECTIVES,
    DataConfig,
    ModelConfig,
    OptimConfig,
    RecipeConfig,
    RLConfig,
    SFTConfig,
    load_recipe,
    recipe_from_dict,
)

__all__ = [
    "DEFAULT_LORA_TARGETS",
    "METHOD_OBJECTIVES",
    "ConfigError",
    "CurriculumConfig",
    "DataConfig",
    "MaskingConfig",
    "ModelConfig",
    "OptimConfig",
    "RLConfig",
    "RecipeConfig",
    "SFTConfig",
    "coerce_value",
    "format_help",
    "from_dict",
    "load",
    "load_recipe",
    "parse_overrides",
    "recipe_from_dict",
    "resolve_key",
    "save_config",
    "to_dict",
    "to_yaml",
]
