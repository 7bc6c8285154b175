"""Typed configuration: schema and strict loading."""

from tunesmith.config.load import config_to_dict, load_config, save_config, validate_config
from tunesmith.config.schema import Config

__all__ = ["Config", "config_to_dict", "load_config", "save_config", "validate_config"]
