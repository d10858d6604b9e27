"""The streaming side of cosine-host: configuration, the block engine, rendering, live audio and
latency tests. sounddevice is imported lazily, only by the live modules.

The names below load their modules (and with them torch) on first use, so that importing a
light module such as stream.interrupts or stream.batch stays cheap: a batch starts its worker
processes before the command's own process has paid for torch, and they import it side by
side."""
import importlib

from stream.errors import UserError

_LAZY = {"Config": "stream.config", "ConfigError": "stream.config",
         "load_config": "stream.config", "Engine": "stream.engine",
         "EngineInputError": "stream.engine"}

__all__ = ["Config", "ConfigError", "load_config", "Engine", "EngineInputError", "UserError"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stream' has no attribute {name!r}")
