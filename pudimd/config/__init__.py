"""Config: models, loading with located errors, schema export."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pudimd.config.errors import ConfigError, Problem
from pudimd.config.loader import ConfigSchema, load_config, load_config_text
from pudimd.config.models import ConfigBase, TargetBase, build_config_model

if TYPE_CHECKING:
    from pudimd.plugins import PluginHost

__all__ = [
    "ConfigBase",
    "ConfigError",
    "ConfigSchema",
    "Problem",
    "TargetBase",
    "build_config_model",
    "load_config",
    "load_config_text",
    "schema_for",
]


def schema_for(host: PluginHost) -> ConfigSchema:
    """The config schema for the probe and notifier types registered with ``host``."""
    probes = host.types("probe")
    notifiers = host.types("notifier")
    return ConfigSchema(build_config_model(probes, notifiers), tuple(probes), notifiers)
