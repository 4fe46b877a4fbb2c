"""Project configuration: ``config/default.yaml`` + override files + ``--set key=value``, validated once."""

from config.loader import ConfigError, load_config
from config.schema import ProjectConfig

__all__ = ["ConfigError", "ProjectConfig", "load_config"]
