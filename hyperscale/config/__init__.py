"""The run configuration: schema (a docstring per field), YAML + `--set` parsing, cross-section checks."""

from hyperscale.config.parse import RUNTIME_KEY, apply_overrides, build_config, from_dict, load_config, load_yaml
from hyperscale.config.schema import (CONDITION_KINDS, AdapterConfig, DistributedConfig, EvalConfig, HypernetConfig,
                                      LoggingConfig, ModelConfig, RunConfig, TinyModelConfig, TrainConfig,
                                      WandbConfig)

__all__ = ["CONDITION_KINDS", "RUNTIME_KEY", "AdapterConfig", "DistributedConfig", "EvalConfig", "HypernetConfig",
           "LoggingConfig", "ModelConfig", "RunConfig", "TinyModelConfig", "TrainConfig", "WandbConfig",
           "apply_overrides", "build_config", "from_dict", "load_config", "load_yaml"]
