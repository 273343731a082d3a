"""Typed configuration: ``load(experiment, overrides, smoke=...)`` -> ``Config``; see ``loader`` for the grammar."""

from .errors import ConfigError
from .loader import diff, flatten, load, load_run, schema_keys, to_dict, to_yaml
from .schema import Config

__all__ = ["Config", "ConfigError", "diff", "flatten", "load", "load_run", "schema_keys", "to_dict", "to_yaml"]
