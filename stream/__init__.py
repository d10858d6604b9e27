"""The streaming side of cosine-host: configuration, the block engine, rendering, live audio and
latency tests. sounddevice is imported lazily, only by the live modules."""
from stream.config import Config, ConfigError, load_config
from stream.engine import Engine, EngineInputError
from stream.errors import UserError

__all__ = ["Config", "ConfigError", "load_config", "Engine", "EngineInputError", "UserError"]
